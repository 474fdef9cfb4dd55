// Λ attention on a CUDA device (lmi::attn::cuda::run): decode and prefill timings.
//
//   lmi_bench_attention_cuda [--quick] [--json] [--iters N] [--heads H] [--kv-heads HKV]
//                            [--head-dim D] [--chunk C]
//
// Layout. A batch of b = independent sequences, each with its own K/V cache laid out as
// the engine's ring buffer: 10 pinned slots for the first tokens, nLocal ring slots (the
// write head mid-ring, so slot order is not position order), and for prefill C more slots
// holding the chunk. K/V are f16, [slot][nHeadKV][headDim]. The stream is n tokens long:
//   decode : one query per sequence at position n - 1                (nQ = 1 per call)
//   prefill: the chunk's C queries at positions n - C .. n - 1       (nQ = C per call)
// The b calls go to b streams (one per sequence) and are timed together with events; L2 is
// flushed (a 256 MiB memset) before every timed iteration. Reported: median ms per batch,
// kv GB/s = bytes of the kept K/V rows (each sequence: (10 + nLocal [+ C]) slots x nHeadKV x
// headDim x 2 bytes x {K, V}) / time — the least traffic the step needs — and TFLOP/s =
// 4 * headDim * keptKeys * nHead per query / time, against the H200's 4.8 TB/s and
// ~989 TFLOP/s (dense f16 tensor). Λ cost does not grow with n: n only moves positions.
//
// Exit 77 when there is no CUDA device.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "cuda/attention_cuda_internal.h"
#include "cuda_check.h"
#include "lmi/attention_cuda.h"

namespace {

using namespace lmi::attn;
namespace cd = lmi::attn::cuda::detail;

constexpr double kPeakBytes = 4.8e12;
constexpr double kPeakFlops = 989e12;

struct Config {
  bool quick = false, json = false;
  int iters = 20;
  int nHead = 32, nHeadKV = 8, headDim = 128;
  int chunk = 1024;
};

uint16_t toHalf(float f) {  // round to nearest even; inputs are small and normal
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t ax = x & 0x7fffffffu;
  if (ax < 0x38800000u) return sign;  // tiny: flush to zero (not reached by [-1, 1] data above 2^-14)
  uint32_t h = (((ax >> 23) - 112u) << 10) | ((ax & 0x7fffffu) >> 13);
  const uint32_t rem = ax & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++;
  return static_cast<uint16_t>(sign | h);
}

struct Sequence {
  void* k = nullptr;
  void* v = nullptr;
  float* q = nullptr;
  float* out = nullptr;
  int64_t* slotPos = nullptr;
  int64_t* qPos = nullptr;
  cudaStream_t st = nullptr;
};

struct Result {
  std::string mode;
  int64_t nLocal, n;
  int batch;
  double ms, gbps, tflops;
  std::string plan;
};

Result measure(const Config& cfg, bool decode, int64_t nLocal, int64_t n, int batch, void* flush, size_t flushBytes) {
  const int64_t nGlobal = 10;
  const int C = decode ? 1 : cfg.chunk;
  const int64_t nSlot = nGlobal + nLocal + (decode ? 0 : C);
  const int64_t row = static_cast<int64_t>(cfg.nHeadKV) * cfg.headDim;
  const int nQ = C;

  // Slot positions: pinned 0..9, the ring holding the nLocal tokens before the chunk (or
  // before and at the decode position), write head mid-ring, then the chunk.
  std::vector<int64_t> pos(nSlot);
  for (int64_t t = 0; t < nGlobal; t++) pos[t] = t;
  const int64_t ringEnd = decode ? n : n - C;  // ring holds [ringEnd - nLocal, ringEnd)
  for (int64_t t = ringEnd - nLocal; t < ringEnd; t++) pos[nGlobal + (t % nLocal)] = t;
  for (int c = 0; c < (decode ? 0 : C); c++) pos[nGlobal + nLocal + c] = n - C + c;
  std::vector<int64_t> qpos(nQ);
  for (int i = 0; i < nQ; i++) qpos[i] = n - nQ + i;

  std::vector<uint16_t> kv(static_cast<size_t>(nSlot * row));
  uint64_t s = 12345;
  for (auto& x : kv) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    x = toHalf(static_cast<float>(static_cast<int64_t>(s >> 40) % 2001 - 1000) / 1000.0f);
  }
  std::vector<float> q(static_cast<size_t>(nQ) * cfg.nHead * cfg.headDim);
  for (auto& x : q) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    x = static_cast<float>(static_cast<int64_t>(s >> 40) % 2001 - 1000) / 1000.0f;
  }

  std::vector<Sequence> seqs(batch);
  for (Sequence& sq : seqs) {
    CUDA_OK(cudaMalloc(&sq.k, kv.size() * 2));
    CUDA_OK(cudaMalloc(&sq.v, kv.size() * 2));
    CUDA_OK(cudaMalloc(&sq.q, q.size() * 4));
    CUDA_OK(cudaMalloc(&sq.out, q.size() * 4));
    CUDA_OK(cudaMalloc(&sq.slotPos, pos.size() * 8));
    CUDA_OK(cudaMalloc(&sq.qPos, qpos.size() * 8));
    CUDA_OK(cudaMemcpy(sq.k, kv.data(), kv.size() * 2, cudaMemcpyHostToDevice));
    CUDA_OK(cudaMemcpy(sq.v, kv.data(), kv.size() * 2, cudaMemcpyHostToDevice));
    CUDA_OK(cudaMemcpy(sq.q, q.data(), q.size() * 4, cudaMemcpyHostToDevice));
    CUDA_OK(cudaMemcpy(sq.slotPos, pos.data(), pos.size() * 8, cudaMemcpyHostToDevice));
    CUDA_OK(cudaMemcpy(sq.qPos, qpos.data(), qpos.size() * 8, cudaMemcpyHostToDevice));
    CUDA_OK(cudaStreamCreateWithFlags(&sq.st, cudaStreamNonBlocking));
  }
  auto problem = [&](const Sequence& sq) {
    Problem p;
    p.nQ = nQ;
    p.nHead = cfg.nHead;
    p.nHeadKV = cfg.nHeadKV;
    p.headDim = cfg.headDim;
    p.nSlot = nSlot;
    p.q = sq.q;
    p.k = sq.k;
    p.v = sq.v;
    p.kvType = KVType::F16;
    p.slotPos = sq.slotPos;
    p.qPos = sq.qPos;
    p.scale = 1.0f / std::sqrt(static_cast<float>(cfg.headDim));
    p.pe.kind = Encoding::Rope;
    p.mask.origin = 0;
    p.mask.nGlobal = nGlobal;
    p.mask.nLocal = nLocal;
    p.mask.limitDistance = nLocal;
    p.out = sq.out;
    return p;
  };
  const cd::RunPlan pl = cd::plan(problem(seqs[0]));
  char planBuf[160];
  std::snprintf(planBuf, sizeof planBuf, "%s QB=%d HB=%d splits=%d blocks=%lld smem=%zu",
                pl.path == cd::Path::Mma ? "mma" : "scalar", pl.QB, pl.HB, pl.nSplit, pl.blocks, pl.smemBytes);

  cudaEvent_t e0, e1;
  CUDA_OK(cudaEventCreate(&e0));
  CUDA_OK(cudaEventCreate(&e1));
  std::vector<double> times;
  const int warm = 3;
  for (int it = 0; it < warm + cfg.iters; it++) {
    CUDA_OK(cudaMemset(flush, it & 0xff, flushBytes));  // evict K/V from L2
    CUDA_OK(cudaDeviceSynchronize());
    CUDA_OK(cudaEventRecord(e0, nullptr));
    for (Sequence& sq : seqs) {
      CUDA_OK(cudaStreamWaitEvent(sq.st, e0, 0));
      cuda::run(problem(sq), sq.st);
    }
    for (Sequence& sq : seqs) {
      cudaEvent_t done;
      CUDA_OK(cudaEventCreateWithFlags(&done, cudaEventDisableTiming));
      CUDA_OK(cudaEventRecord(done, sq.st));
      CUDA_OK(cudaStreamWaitEvent(nullptr, done, 0));
      CUDA_OK(cudaEventDestroy(done));
    }
    CUDA_OK(cudaEventRecord(e1, nullptr));
    CUDA_OK(cudaEventSynchronize(e1));
    CUDA_OK(cudaGetLastError());
    float ms = 0;
    CUDA_OK(cudaEventElapsedTime(&ms, e0, e1));
    if (it >= warm) times.push_back(ms);
  }
  std::sort(times.begin(), times.end());
  const double ms = times[times.size() / 2];

  const double keptKeys = static_cast<double>(nGlobal + nLocal);  // per query (all local keys exist)
  const double kvBytes = static_cast<double>(batch) * static_cast<double>(nSlot) * row * 2.0 * 2.0;
  const double flops = 4.0 * cfg.headDim * keptKeys * cfg.nHead * nQ * batch;
  for (Sequence& sq : seqs) {
    cudaFree(sq.k);
    cudaFree(sq.v);
    cudaFree(sq.q);
    cudaFree(sq.out);
    cudaFree(sq.slotPos);
    cudaFree(sq.qPos);
    cudaStreamDestroy(sq.st);
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  return {decode ? "decode" : "prefill", nLocal, n, batch, ms, kvBytes / (ms * 1e-3) / 1e9, flops / (ms * 1e-3) / 1e12,
          planBuf};
}

}  // namespace

int main(int argc, char** argv) {
  Config cfg;
  for (int i = 1; i < argc; i++) {
    const std::string a = argv[i];
    auto next = [&]() -> int {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return std::atoi(argv[++i]);
    };
    if (a == "--quick") cfg.quick = true, cfg.iters = 5;
    else if (a == "--json") cfg.json = true;
    else if (a == "--iters") cfg.iters = std::max(1, next());
    else if (a == "--heads") cfg.nHead = next();
    else if (a == "--kv-heads") cfg.nHeadKV = next();
    else if (a == "--head-dim") cfg.headDim = next();
    else if (a == "--chunk") cfg.chunk = std::max(1, next());
    else {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      return 2;
    }
  }
  if (!cuda::compiled() || cuda::deviceCount() == 0) {
    std::printf("no CUDA device\n");
    return 77;
  }
  cudaDeviceProp prop{};
  CUDA_OK(cudaGetDeviceProperties(&prop, 0));
  const size_t flushBytes = size_t(256) << 20;
  void* flush = nullptr;
  CUDA_OK(cudaMalloc(&flush, flushBytes));

  std::vector<Result> rs;
  const std::vector<int64_t> locals = {2048, 4096};
  const std::vector<int64_t> lens = {32768, 131072};
  const std::vector<int> batches = cfg.quick ? std::vector<int>{1, 8} : std::vector<int>{1, 8, 32};
  for (bool decode : {true, false})
    for (int64_t w : locals)
      for (int64_t n : lens)
        for (int b : batches) rs.push_back(measure(cfg, decode, w, n, b, flush, flushBytes));
  cudaFree(flush);

  if (cfg.json) {
    std::printf("{\"device\": \"%s\", \"nHead\": %d, \"nHeadKV\": %d, \"headDim\": %d, \"chunk\": %d, \"kv\": \"f16\",\n",
                prop.name, cfg.nHead, cfg.nHeadKV, cfg.headDim, cfg.chunk);
    std::printf(" \"peakBytesPerSec\": %.3g, \"peakFlops\": %.3g, \"results\": [\n", kPeakBytes, kPeakFlops);
    for (size_t i = 0; i < rs.size(); i++) {
      const Result& r = rs[i];
      std::printf("  {\"mode\": \"%s\", \"nLocal\": %lld, \"n\": %lld, \"batch\": %d, \"ms\": %.4f, \"kvGBps\": %.1f, "
                  "\"tflops\": %.2f, \"plan\": \"%s\"}%s\n",
                  r.mode.c_str(), (long long)r.nLocal, (long long)r.n, r.batch, r.ms, r.gbps, r.tflops, r.plan.c_str(),
                  i + 1 < rs.size() ? "," : "");
    }
    std::printf("]}\n");
  } else {
    std::printf("%s: nHead %d, nHeadKV %d, headDim %d, f16 K/V, prefill chunk %d; peaks 4.8 TB/s, 989 TFLOP/s\n",
                prop.name, cfg.nHead, cfg.nHeadKV, cfg.headDim, cfg.chunk);
    std::printf("%-8s %7s %7s %5s %10s %9s %6s %8s %6s  %s\n", "mode", "nLocal", "n", "batch", "ms", "kv GB/s", "%HBM",
                "TFLOP/s", "%peak", "plan");
    for (const Result& r : rs)
      std::printf("%-8s %7lld %7lld %5d %10.4f %9.1f %5.1f%% %8.2f %5.1f%%  %s\n", r.mode.c_str(), (long long)r.nLocal,
                  (long long)r.n, r.batch, r.ms, r.gbps, 100.0 * r.gbps * 1e9 / kPeakBytes, r.tflops,
                  100.0 * r.tflops * 1e12 / kPeakFlops, r.plan.c_str());
  }
  return 0;
}
