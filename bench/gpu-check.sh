#!/usr/bin/env bash
# One prepared check for a GPU machine (CUDA toolkit, CMake, a C++ compiler; no Node.js, no
# network), runnable anywhere in CPU-only mode.
#
#   bash bench/gpu-check.sh OUT_DIR [--cpu-only]
#
# GPU mode (nvcc and a CUDA device present, no --cpu-only):
#   configure the root project with plain CMake (-DLMI_CUDA=ON -DLMI_BUILD_TESTS=ON), build
#   with every core, then run ctest (the CPU tests), lmi_test_attention_cuda (CUDA kernels vs
#   the CPU reference and kernel), lmi_bench_attention_cuda --json, and lmi_test_engine_gpu
#   when it was built (model: $LMI_GPU_CHECK_MODEL, else the stories260K fixture if present).
# CPU-only mode (--cpu-only, or automatically without nvcc or without a device):
#   the same root build with LMI_CUDA=OFF, ctest, the CPU attention bench (--quick); and,
#   when nvcc exists, a compile check of the CUDA kernels alone (native/attention with
#   LMI_CUDA=ON for sm_80/89/90), which needs no GPU and no cuBLAS.
#
# Writes OUT_DIR/summary.txt (mode and why, one PASS/FAIL/SKIP line per step) and a log per
# step (OUT_DIR/*.log, bench JSON in OUT_DIR/*.json). Exits non-zero when any step fails.
#
# Environment: GGML_SOURCE_DIR (default: node_modules/nodejs-whisper/cpp/whisper.cpp/ggml),
# LMI_GPU_CHECK_BUILD (build folder, default build/gpu-check[-cpu], outside OUT_DIR so that
# only logs travel back), LMI_GPU_CHECK_MODEL (a GGUF for the engine test), JOBS (build jobs).
set -u

usage() { echo "usage: bash bench/gpu-check.sh OUT_DIR [--cpu-only]" >&2; exit 2; }
[ $# -ge 1 ] || usage
OUT=""
CPU_ONLY=0
for a in "$@"; do
  case "$a" in
    --cpu-only) CPU_ONLY=1 ;;
    -*) usage ;;
    *) [ -z "$OUT" ] && OUT="$a" || usage ;;
  esac
done
[ -n "$OUT" ] || usage

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mkdir -p "$OUT" || exit 2
OUT="$(cd "$OUT" && pwd)"
cd "$ROOT" || exit 2
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
JOBS="${JOBS:-$(nproc 2>/dev/null || echo 2)}"
FAILED=0
T_START=$(date +%s)

note() { echo "$*" | tee -a "$SUMMARY"; }

# step NAME TIMEOUT_S CMD...: runs CMD with its output in OUT/NAME.log; records PASS/FAIL
# (exit 77 = SKIP, with the log's last line as the reason).
step() {
  local name="$1" limit="$2"
  shift 2
  local t0 rc
  t0=$(date +%s)
  echo ">> $name: $*"
  if command -v timeout > /dev/null 2>&1; then
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  else
    "$@" > "$OUT/$name.log" 2>&1
  fi
  rc=$?
  local secs=$(( $(date +%s) - t0 ))
  if [ $rc -eq 0 ]; then
    note "PASS  $name (${secs}s)"
  elif [ $rc -eq 77 ]; then
    note "SKIP  $name (${secs}s): $(tail -n 1 "$OUT/$name.log")"
  else
    [ $rc -eq 124 ] && echo "(timed out after ${limit}s)" >> "$OUT/$name.log"
    note "FAIL  $name (${secs}s, exit $rc): see $name.log"
    tail -n 30 "$OUT/$name.log" | sed 's/^/      /'
    FAILED=1
  fi
  return $rc
}

# CUDA: nvcc on PATH or in the usual place; a device according to nvidia-smi.
if ! command -v nvcc > /dev/null 2>&1; then
  for d in /usr/local/cuda/bin /opt/cuda/bin; do
    if [ -x "$d/nvcc" ]; then export PATH="$d:$PATH"; break; fi
  done
fi
HAVE_NVCC=0
command -v nvcc > /dev/null 2>&1 && HAVE_NVCC=1
HAVE_GPU=0
if command -v nvidia-smi > /dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then HAVE_GPU=1; fi

MODE=gpu
REASON="nvcc and a CUDA device found"
if [ $CPU_ONLY -eq 1 ]; then
  MODE=cpu; REASON="--cpu-only was given"
elif [ $HAVE_NVCC -eq 0 ]; then
  MODE=cpu; REASON="no nvcc (CUDA toolkit) found"
elif [ $HAVE_GPU -eq 0 ]; then
  MODE=cpu; REASON="no CUDA device found (nvidia-smi -L lists none)"
fi
note "lm-infinite gpu-check: mode=$MODE ($REASON)"
note "date: $(date -u '+%Y-%m-%dT%H:%M:%SZ'); host: $(uname -srm); jobs: $JOBS"
[ $HAVE_NVCC -eq 1 ] && note "nvcc: $(nvcc --version | tail -n 1)"
[ $HAVE_GPU -eq 1 ] && note "gpu: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -n 1)"
if git -C "$ROOT" rev-parse --short HEAD > /dev/null 2>&1; then
  note "commit: $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet 2>/dev/null || echo ' (with local changes)')"
fi

GGML="${GGML_SOURCE_DIR:-$ROOT/node_modules/nodejs-whisper/cpp/whisper.cpp/ggml}"
if [ ! -f "$GGML/CMakeLists.txt" ]; then
  note "FAIL  ggml sources not found at $GGML (carry node_modules/nodejs-whisper or set GGML_SOURCE_DIR)"
  exit 1
fi

if [ "$MODE" = gpu ]; then
  BUILD="${LMI_GPU_CHECK_BUILD:-$ROOT/build/gpu-check}"
  CUDA_FLAG=ON
else
  BUILD="${LMI_GPU_CHECK_BUILD:-$ROOT/build/gpu-check-cpu}"
  CUDA_FLAG=OFF
fi

if step configure 900 cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DLMI_CUDA=$CUDA_FLAG \
     -DLMI_BUILD_TESTS=ON -DGGML_SOURCE_DIR="$GGML"; then
  if step build 3600 cmake --build "$BUILD" -j "$JOBS"; then
    step ctest 1800 ctest --test-dir "$BUILD" --output-on-failure -j "$JOBS"
    ATT="$BUILD/native/attention"
    if [ "$MODE" = gpu ]; then
      step attention_cuda_test 1200 "$ATT/lmi_test_attention_cuda"
      if step attention_cuda_bench 1200 "$ATT/lmi_bench_attention_cuda" --json; then
        cp "$OUT/attention_cuda_bench.log" "$OUT/attention_cuda_bench.json"
      fi
      ENGINE="$BUILD/native/engine/lmi_test_engine_gpu"
      MODEL="${LMI_GPU_CHECK_MODEL:-}"
      if [ -z "$MODEL" ]; then
        F="${LMI_FIXTURES:-$ROOT/../shared/fixtures}/stories260K/stories260K.gguf"
        [ -f "$F" ] && MODEL="$F"
      fi
      if [ ! -x "$ENGINE" ]; then
        note "SKIP  engine_gpu: lmi_test_engine_gpu was not built"
      elif [ -z "$MODEL" ]; then
        note "SKIP  engine_gpu: no model (set LMI_GPU_CHECK_MODEL to a GGUF)"
      else
        step engine_gpu 1800 "$ENGINE" "$MODEL"
      fi
    else
      if step attention_cpu_bench 600 "$ATT/lmi_bench_attention" --quick --json; then
        cp "$OUT/attention_cpu_bench.log" "$OUT/attention_cpu_bench.json"
      fi
    fi
  fi
fi

# Without a GPU, nvcc can still prove that the kernels compile for sm_80/89/90.
if [ "$MODE" = cpu ] && [ $HAVE_NVCC -eq 1 ]; then
  KB="${BUILD}-kernels"
  if step cuda_kernels_configure 600 cmake -S "$ROOT/native/attention" -B "$KB" -DCMAKE_BUILD_TYPE=Release \
       -DLMI_CUDA=ON -DLMI_BUILD_TESTS=ON; then
    step cuda_kernels_build 3600 cmake --build "$KB" -j "$JOBS" \
      --target lmi_attention_cuda lmi_test_attention_cuda lmi_bench_attention_cuda
  fi
fi

note "total: $(( $(date +%s) - T_START ))s; result: $([ $FAILED -eq 0 ] && echo PASS || echo FAIL)"
exit $FAILED
