// Whole-model check of the engine's executors on one token stream, without Node:
//   CPU single graph (the Λ kernel as a ggml custom op)     — the reference
//   CPU segmented    (graphs cut at each attention, kernel between them)  — must equal it
//   GPU segmented    (ggml's CUDA backend + the CUDA Λ kernel), when there is a GPU
// The stream: `--tokens` pseudo-random tokens, prefilled in `--chunk`-token pieces and then
// decoded one by one for the last `--decode`, through a Λ ring of nGlobal + nLocal + chunk slots
// much shorter than the stream (it wraps), f16 K/V. Every eval's logits are compared as they come
// (max |Δ|, RMS of Δ relative to the logits' spread, argmax agreement); decode and prefill times
// are reported per executor.
//
//   lmi_test_engine_gpu MODEL.gguf [--tokens N] [--decode N] [--chunk N] [--local N]
//                       [--threads N] [--cpu-only]
//
// The GGUF is read here with ggml's gguf API (llama and qwen2 architectures), since the model
// description normally comes from TypeScript. Exit: 0 all ran and agreed; 1 a mismatch or an
// error; 2 usage; 77 the CPU comparison passed but there is no GPU (with the reason), unless
// --cpu-only (then 0).
//
// Tolerances. CPU segmented vs single graph: the same ggml CPU ops and the same kernel on the
// same inputs, so bit-identical is expected; 1e-4 absolute is allowed. GPU vs CPU: the K/V are
// rounded to f16 on both sides, but the GPU's matmuls accumulate in another order and round
// their activations differently (f16 / q8_1 on the GPU, f32 / q8_0 / q8_K on the CPU), errors
// that pass through every layer: logits differ by ~1e-3 of their spread. Required: RMS(Δ) below
// 3% of the RMS spread of the logits, and the argmax agreeing on >= 90% of the rows (near-ties
// flip).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "ggml.h"
#include "gguf.h"
#include "lmi/engine.h"
#include "lmi/sampling.h"

namespace eng = lmi::engine;

namespace {

struct Args {
  std::string model;
  int64_t tokens = 1500;
  int64_t decode = 64;
  int64_t chunk = 128;
  int64_t local = 256;
  int threads = 0;
  bool cpuOnly = false;
};

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "%s\nusage: lmi_test_engine_gpu MODEL.gguf [--tokens N] [--decode N] [--chunk N] [--local N] "
               "[--threads N] [--cpu-only]\n",
               why);
  std::exit(2);
}

Args parseArgs(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; i++) {
    const std::string s = argv[i];
    auto value = [&]() -> int64_t {
      if (i + 1 >= argc) usage(("missing value after " + s).c_str());
      char* end = nullptr;
      const long long v = std::strtoll(argv[++i], &end, 10);
      if (end == argv[i] || *end != '\0' || v < 0) usage(("bad value for " + s).c_str());
      return v;
    };
    if (s == "--tokens") a.tokens = value();
    else if (s == "--decode") a.decode = value();
    else if (s == "--chunk") a.chunk = value();
    else if (s == "--local") a.local = value();
    else if (s == "--threads") a.threads = static_cast<int>(value());
    else if (s == "--cpu-only") a.cpuOnly = true;
    else if (!s.empty() && s[0] == '-') usage(("unknown option " + s).c_str());
    else if (a.model.empty()) a.model = s;
    else usage("more than one model given");
  }
  if (a.model.empty()) usage("no model given");
  if (a.chunk < 1 || a.local < 1 || a.tokens < 2 || a.decode >= a.tokens) usage("need chunk, local >= 1 and decode < tokens");
  if (a.threads == 0) a.threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency() / 2));
  return a;
}

// ---------------------------------------------------------------------------------------------
// The GGUF header -> ModelSpec (what lib/model/hparams.ts does for llama and qwen2).

struct GgufFile {
  gguf_context* gguf = nullptr;
  ggml_context* meta = nullptr;
  ~GgufFile() {
    if (gguf != nullptr) gguf_free(gguf);
    if (meta != nullptr) ggml_free(meta);
  }
};

bool findNumber(const gguf_context* g, const std::string& key, double* out) {
  const int64_t id = gguf_find_key(g, key.c_str());
  if (id < 0) return false;
  switch (gguf_get_kv_type(g, id)) {
    case GGUF_TYPE_UINT8: *out = gguf_get_val_u8(g, id); return true;
    case GGUF_TYPE_INT8: *out = gguf_get_val_i8(g, id); return true;
    case GGUF_TYPE_UINT16: *out = gguf_get_val_u16(g, id); return true;
    case GGUF_TYPE_INT16: *out = gguf_get_val_i16(g, id); return true;
    case GGUF_TYPE_UINT32: *out = gguf_get_val_u32(g, id); return true;
    case GGUF_TYPE_INT32: *out = gguf_get_val_i32(g, id); return true;
    case GGUF_TYPE_UINT64: *out = static_cast<double>(gguf_get_val_u64(g, id)); return true;
    case GGUF_TYPE_INT64: *out = static_cast<double>(gguf_get_val_i64(g, id)); return true;
    case GGUF_TYPE_FLOAT32: *out = gguf_get_val_f32(g, id); return true;
    case GGUF_TYPE_FLOAT64: *out = gguf_get_val_f64(g, id); return true;
    default: return false;
  }
}

double number(const gguf_context* g, const std::string& key, const double* fallback = nullptr) {
  double v = 0;
  if (findNumber(g, key, &v)) return v;
  if (fallback != nullptr) return *fallback;
  throw std::runtime_error("GGUF key " + key + " is missing or not a number");
}

eng::ModelSpec specFromGguf(const std::string& path, int threads) {
  GgufFile f;
  gguf_init_params params{};
  params.no_alloc = true;
  params.ctx = &f.meta;
  f.gguf = gguf_init_from_file(path.c_str(), params);
  if (f.gguf == nullptr) throw std::runtime_error("cannot read " + path + " as GGUF");
  const int64_t archId = gguf_find_key(f.gguf, "general.architecture");
  if (archId < 0 || gguf_get_kv_type(f.gguf, archId) != GGUF_TYPE_STRING)
    throw std::runtime_error("general.architecture is missing");
  const std::string arch = gguf_get_val_str(f.gguf, archId);

  eng::ModelSpec spec;
  spec.path = path;
  spec.threads = threads;
  if (arch != "llama" && arch != "qwen2") throw std::runtime_error("this test reads llama and qwen2 GGUFs, not " + arch);
  eng::parseArch(arch, &spec.arch);
  eng::Hyperparameters& hp = spec.hparams;
  const std::string p = arch + ".";
  hp.nEmbd = static_cast<int64_t>(number(f.gguf, p + "embedding_length"));
  hp.nLayer = static_cast<int64_t>(number(f.gguf, p + "block_count"));
  hp.nFF = static_cast<int64_t>(number(f.gguf, p + "feed_forward_length"));
  hp.nHead = static_cast<int64_t>(number(f.gguf, p + "attention.head_count"));
  const double nHead = static_cast<double>(hp.nHead);
  hp.nHeadKV = static_cast<int64_t>(number(f.gguf, p + "attention.head_count_kv", &nHead));
  const double headDim = hp.nHead > 0 ? static_cast<double>(hp.nEmbd / hp.nHead) : 0.0;
  hp.headDim = static_cast<int64_t>(number(f.gguf, p + "attention.key_length", &headDim));
  const double eps = 1e-5, theta = 10000.0, zero = 0.0;
  hp.normEps = number(f.gguf, p + "attention.layer_norm_rms_epsilon", &eps);
  hp.contextLength = static_cast<int64_t>(number(f.gguf, p + "context_length", &zero));
  hp.ropeTheta = number(f.gguf, p + "rope.freq_base", &theta);
  const double scaleFactor = number(f.gguf, p + "rope.scaling.factor", &zero);
  hp.ropeFreqScale = scaleFactor > 0 ? 1.0 / scaleFactor : 1.0;
  hp.rotaryDim = static_cast<int64_t>(number(f.gguf, p + "rope.dimension_count", &zero));
  hp.ropePairing = arch == "llama" ? lmi::attn::RopePairing::Normal : lmi::attn::RopePairing::NeoX;

  const size_t dataOffset = gguf_get_data_offset(f.gguf);
  for (int64_t i = 0; i < gguf_get_n_tensors(f.gguf); i++) {
    eng::TensorSpec t;
    t.name = gguf_get_tensor_name(f.gguf, i);
    t.type = static_cast<int>(gguf_get_tensor_type(f.gguf, i));
    const ggml_tensor* meta = ggml_get_tensor(f.meta, t.name.c_str());
    if (meta == nullptr) throw std::runtime_error("tensor " + t.name + " has no metadata");
    for (int d = 0; d < ggml_n_dims(meta); d++) t.dims.push_back(meta->ne[d]);
    t.offset = dataOffset + gguf_get_tensor_offset(f.gguf, i);
    t.byteLength = gguf_get_tensor_size(f.gguf, i);
    if (t.name == "token_embd.weight") hp.nVocab = meta->ne[1];
    spec.tensors.push_back(std::move(t));
  }
  if (hp.nVocab == 0) throw std::runtime_error("token_embd.weight is missing");
  return spec;
}

// ---------------------------------------------------------------------------------------------
// The stream: a Λ ring (nGlobal pinned slots, then a ring), as lib/cache lays it out.

struct Step {
  std::vector<int32_t> tokens, slots;
  std::vector<int64_t> positions, slotPositions;
  eng::LogitsMode mode = eng::LogitsMode::All;
};

std::vector<Step> makeStream(const Args& a, int64_t nVocab, int64_t nGlobal, int64_t nSlot) {
  std::vector<int32_t> tokens(static_cast<size_t>(a.tokens));
  uint64_t state = 0x9e3779b97f4a7c15ull;
  tokens[0] = 1;  // BOS in llama vocabularies
  for (size_t i = 1; i < tokens.size(); i++) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    tokens[i] = static_cast<int32_t>(3 + (state >> 33) % static_cast<uint64_t>(std::max<int64_t>(nVocab - 3, 1)));
  }
  std::vector<int64_t> slotPos(static_cast<size_t>(nSlot), -1);
  std::vector<Step> steps;
  const int64_t prefill = a.tokens - a.decode;
  for (int64_t at = 0; at < a.tokens;) {
    const int64_t n = at < prefill ? std::min(a.chunk, prefill - at) : 1;
    Step s;
    s.slotPositions = slotPos;  // what the step attends: the slots before it (and its own tokens)
    for (int64_t i = 0; i < n; i++) {
      const int64_t pos = at + i;
      const int64_t slot = pos < nGlobal ? pos : nGlobal + (pos - nGlobal) % (nSlot - nGlobal);
      s.tokens.push_back(tokens[static_cast<size_t>(pos)]);
      s.positions.push_back(pos);
      s.slots.push_back(static_cast<int32_t>(slot));
      slotPos[static_cast<size_t>(slot)] = pos;
    }
    s.mode = eng::LogitsMode::All;
    steps.push_back(std::move(s));
    at += n;
  }
  return steps;
}

// ---------------------------------------------------------------------------------------------
// Comparison and timing.

struct Executor {
  std::string name;
  std::unique_ptr<eng::Context> ctx;
  double prefillSeconds = 0, decodeSeconds = 0;
  int64_t prefillTokens = 0, decodeTokens = 0;
  std::vector<float> logits;
};

struct Agreement {
  double maxAbs = 0;
  double sumSq = 0, spreadSq = 0;
  int64_t values = 0, rows = 0, argmaxSame = 0;

  void add(const float* ref, const float* got, int64_t nRows, int64_t nVocab) {
    for (int64_t r = 0; r < nRows; r++) {
      const float* a = ref + r * nVocab;
      const float* b = got + r * nVocab;
      double mean = 0;
      for (int64_t j = 0; j < nVocab; j++) mean += a[j];
      mean /= static_cast<double>(nVocab);
      int64_t ia = 0, ib = 0;
      for (int64_t j = 0; j < nVocab; j++) {
        const double d = static_cast<double>(b[j]) - a[j];
        maxAbs = std::isnan(d) ? INFINITY : std::max(maxAbs, std::fabs(d));
        sumSq += d * d;
        spreadSq += (a[j] - mean) * (a[j] - mean);
        if (a[j] > a[ia]) ia = j;
        if (b[j] > b[ib]) ib = j;
      }
      values += nVocab;
      rows++;
      argmaxSame += ia == ib;
    }
  }
  double relRms() const { return spreadSq > 0 ? std::sqrt(sumSq / spreadSq) : 0; }
  double argmaxShare() const { return rows > 0 ? static_cast<double>(argmaxSame) / static_cast<double>(rows) : 1; }
  void print(const char* label) const {
    std::printf("  %-28s max |Δ| %.3e   RMS(Δ)/RMS spread %.3e   argmax agrees %lld/%lld (%.1f%%)\n", label, maxAbs,
                relRms(), static_cast<long long>(argmaxSame), static_cast<long long>(rows), 100.0 * argmaxShare());
  }
};

void runStep(Executor& e, const Step& s, const lmi::attn::LambdaMask& mask, int64_t nVocab) {
  eng::Batch b;
  b.n = static_cast<int64_t>(s.tokens.size());
  b.tokens = s.tokens.data();
  b.positions = s.positions.data();
  b.slots = s.slots.data();
  b.slotPositions = s.slotPositions.data();
  b.nSlotPositions = static_cast<int64_t>(s.slotPositions.size());
  b.mask = mask;
  b.logits = s.mode;
  e.ctx->stage(b);
  e.logits.resize(static_cast<size_t>(e.ctx->stagedOutputRows() * nVocab));
  const auto t0 = std::chrono::steady_clock::now();
  e.ctx->run(e.logits.data());
  const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (b.n == 1) {
    e.decodeSeconds += dt;
    e.decodeTokens++;
  } else {
    e.prefillSeconds += dt;
    e.prefillTokens += b.n;
  }
}

void printTimes(const Executor& e) {
  std::printf("  %-16s prefill %7.1f tok/s (%lld tokens)   decode %8.2f ms/token (%lld steps)\n", e.name.c_str(),
              e.prefillSeconds > 0 ? static_cast<double>(e.prefillTokens) / e.prefillSeconds : 0.0,
              static_cast<long long>(e.prefillTokens),
              e.decodeTokens > 0 ? 1000.0 * e.decodeSeconds / static_cast<double>(e.decodeTokens) : 0.0,
              static_cast<long long>(e.decodeTokens));
}

// A decode run from the end of the stream: 16 greedy steps, then the last 8 taken back and the 9th
// token evaluated again with an eval. Returns the run's ids, its last logits and the eval's logits.
struct RunCheck {
  std::vector<int32_t> ids;
  std::vector<float> runLogits, afterRollback;
  double msPerStep = 0;  // the run's wall time per step (forward passes, sampling, the rows it keeps)
};

RunCheck decodeRunCheck(Executor& e, const Step& last, const lmi::attn::LambdaMask& mask, int64_t nVocab,
                        int64_t nGlobal, int64_t nSlot) {
  constexpr int64_t kSteps = 16, kKeep = 8;
  std::vector<int64_t> table = last.slotPositions;
  for (size_t i = 0; i < last.slots.size(); i++) table[static_cast<size_t>(last.slots[i])] = last.positions[i];
  const int64_t start = last.positions.back() + 1;
  std::vector<int64_t> positions;
  std::vector<int32_t> slots;
  for (int64_t i = 0; i <= kSteps; i++) {
    const int64_t pos = start + i;
    positions.push_back(pos);
    slots.push_back(static_cast<int32_t>(pos < nGlobal ? pos : nGlobal + (pos - nGlobal) % (nSlot - nGlobal)));
  }
  const std::vector<int32_t> recent = {5};
  const std::vector<uint8_t> endAfter(static_cast<size_t>(nVocab), 0);
  eng::DecodeRun r;
  r.token = 5;
  r.maxSteps = kSteps;
  r.positions = positions.data();
  r.slots = slots.data();
  r.slotPositions = table.data();
  r.nSlotPositions = static_cast<int64_t>(table.size());
  r.mask = mask;
  r.recent = recent.data();
  r.nRecent = 1;
  r.endAfter = endAfter.data();
  eng::SamplingParams greedy;
  greedy.temperature = 0;
  eng::TokenSampler sampler(greedy, nVocab);
  eng::Sfc32 rng{1, 2, 3, 4};
  RunCheck out;
  out.ids.resize(kSteps);
  out.runLogits.resize(static_cast<size_t>(nVocab));
  const auto t0 = std::chrono::steady_clock::now();
  const eng::DecodeOutcome o = e.ctx->decode(r, sampler, rng, out.ids.data(), out.runLogits.data());
  out.msPerStep = 1000.0 * std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / kSteps;
  if (o.steps != kSteps || o.sampled != kSteps) throw std::runtime_error(e.name + ": the decode run stopped early");
  e.ctx->rollback(kSteps - kKeep);
  // The stream now ends with step kKeep - 1 (token ids[kKeep - 2]); evaluate ids[kKeep - 1] next.
  for (int64_t i = 0; i < kKeep; i++) table[static_cast<size_t>(slots[i])] = positions[i];
  const int32_t token = out.ids[kKeep - 1];
  eng::Batch b;
  b.n = 1;
  b.tokens = &token;
  b.positions = &positions[kKeep];
  b.slots = &slots[kKeep];
  b.slotPositions = table.data();
  b.nSlotPositions = static_cast<int64_t>(table.size());
  b.mask = mask;
  b.logits = eng::LogitsMode::Last;
  e.ctx->stage(b);
  out.afterRollback.resize(static_cast<size_t>(nVocab));
  e.ctx->run(out.afterRollback.data());
  return out;
}

int run(const Args& a) {
  eng::ModelSpec spec = specFromGguf(a.model, a.threads);
  const int64_t nVocab = spec.hparams.nVocab;
  const int64_t nGlobal = 4;
  const int64_t nLocal = a.local;
  const int64_t nSlot = nGlobal + std::max(nLocal, a.chunk);  // the window; a chunk never writes a slot twice
  std::printf("model %s: %s, %lld layers, nEmbd %lld, nVocab %lld; %lld tokens (%lld decoded), chunk %lld, "
              "Λ nGlobal %lld nLocal %lld, %lld slots (the ring wraps %s), f16 K/V, %d CPU threads\n",
              a.model.c_str(), eng::archName(spec.arch), static_cast<long long>(spec.hparams.nLayer),
              static_cast<long long>(spec.hparams.nEmbd), static_cast<long long>(nVocab),
              static_cast<long long>(a.tokens), static_cast<long long>(a.decode), static_cast<long long>(a.chunk),
              static_cast<long long>(nGlobal), static_cast<long long>(nLocal), static_cast<long long>(nSlot),
              a.tokens > nSlot ? "yes" : "no", a.threads);
  const std::vector<Step> steps = makeStream(a, nVocab, nGlobal, nSlot);
  lmi::attn::LambdaMask mask;
  mask.lambda = true;
  mask.nGlobal = nGlobal;
  mask.nLocal = nLocal;
  mask.limitDistance = nLocal;

  eng::ContextOptions opt;
  opt.nSlot = nSlot;
  opt.kvType = lmi::attn::KVType::F16;
  opt.maxBatch = a.chunk;
  opt.threads = a.threads;

  std::shared_ptr<const eng::Model> cpuModel = eng::loadModel(spec);
  std::vector<Executor> ex(2);
  ex[0].name = "cpu single";
  ex[0].ctx = std::make_unique<eng::Context>(cpuModel, opt);
  eng::ContextOptions seg = opt;
  seg.segmented = true;
  ex[1].name = "cpu segmented";
  ex[1].ctx = std::make_unique<eng::Context>(cpuModel, seg);
  if (ex[0].ctx->segmented() || !ex[1].ctx->segmented()) throw std::runtime_error("internal: executor kinds mixed up");

  const std::string noGpu = a.cpuOnly ? "--cpu-only" : eng::gpuUnavailableReason();
  if (noGpu.empty()) {
    eng::ModelSpec gpuSpec = spec;
    gpuSpec.device = eng::Device::Gpu;
    const eng::GpuInfo info = eng::gpuInfo();
    std::printf("GPU: %s (%s), %.1f GiB\n", info.name.c_str(), info.description.c_str(),
                static_cast<double>(info.memoryTotal) / (1 << 30));
    std::shared_ptr<const eng::Model> gpuModel = eng::loadModel(gpuSpec);
    ex.push_back(Executor{});
    ex.back().name = "gpu segmented";
    ex.back().ctx = std::make_unique<eng::Context>(gpuModel, opt);
  }

  Agreement segVsSingle, gpuVsCpu, gpuDecode;
  for (const Step& s : steps) {
    for (Executor& e : ex) runStep(e, s, mask, nVocab);
    const int64_t rows = ex[0].ctx->stagedOutputRows();
    segVsSingle.add(ex[0].logits.data(), ex[1].logits.data(), rows, nVocab);
    if (ex.size() > 2) {
      gpuVsCpu.add(ex[0].logits.data(), ex[2].logits.data(), rows, nVocab);
      if (s.tokens.size() == 1) gpuDecode.add(ex[0].logits.data(), ex[2].logits.data(), rows, nVocab);
    }
  }

  // Decode runs (several sampled tokens per call) and their rollback, on every executor.
  std::vector<RunCheck> runs;
  for (Executor& e : ex) runs.push_back(decodeRunCheck(e, steps.back(), mask, nVocab, nGlobal, nSlot));
  Agreement runSeg, afterSeg;
  runSeg.add(runs[0].runLogits.data(), runs[1].runLogits.data(), 1, nVocab);
  afterSeg.add(runs[0].afterRollback.data(), runs[1].afterRollback.data(), 1, nVocab);
  const bool runOk = runs[1].ids == runs[0].ids && std::max(runSeg.maxAbs, afterSeg.maxAbs) <= 1e-4;
  if (!runOk) std::printf("FAIL: cpu segmented decode run or rollback differs from cpu single\n");
  bool gpuRunOk = true;
  if (ex.size() > 2) {
    int64_t same = 0;
    while (same < static_cast<int64_t>(runs[0].ids.size()) && runs[2].ids[same] == runs[0].ids[same]) same++;
    std::printf("gpu decode run: greedy ids agree with the cpu's for %lld of 16 steps\n", static_cast<long long>(same));
    if (same >= 8) {  // the same stream up to the rollback point: the logits after it are comparable
      Agreement after;
      after.add(runs[0].afterRollback.data(), runs[2].afterRollback.data(), 1, nVocab);
      after.print("gpu, eval after rollback");
      gpuRunOk = after.relRms() <= 0.03;
    }
  }

  std::printf("timings:\n");
  for (size_t i = 0; i < ex.size(); i++) {
    printTimes(ex[i]);
    std::printf("  %-16s decode run %.2f ms/step (16 steps, greedy sampling between them)\n", ex[i].name.c_str(),
                runs[i].msPerStep);
  }
  std::printf("agreement with cpu single:\n");
  segVsSingle.print("cpu segmented");
  const bool cpuOk = segVsSingle.maxAbs <= 1e-4 && runOk;
  if (!cpuOk) std::printf("FAIL: cpu segmented differs from cpu single by %.3e (> 1e-4)\n", segVsSingle.maxAbs);
  if (ex.size() <= 2) {
    if (!cpuOk) return 1;
    if (a.cpuOnly) std::printf("ok (--cpu-only)\n");
    else std::printf("no GPU: %s\n", noGpu.c_str());
    return a.cpuOnly ? 0 : 77;
  }
  gpuVsCpu.print("gpu segmented");
  gpuDecode.print("gpu segmented, decode rows");
  const bool gpuOk = gpuVsCpu.relRms() <= 0.03 && gpuVsCpu.argmaxShare() >= 0.9 && gpuRunOk;
  if (!gpuOk) std::printf("FAIL: gpu logits outside the tolerance (RMS(Δ)/spread <= 3e-2, argmax >= 90%%)\n");
  if (ex[2].decodeSeconds > 0 && ex[0].decodeSeconds > 0)
    std::printf("gpu decode is %.1fx the cpu's speed\n",
                (ex[0].decodeSeconds / static_cast<double>(ex[0].decodeTokens)) /
                    (ex[2].decodeSeconds / static_cast<double>(ex[2].decodeTokens)));
  std::printf("%s\n", cpuOk && gpuOk ? "ok" : "FAILED");
  return cpuOk && gpuOk ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parseArgs(argc, argv);
  try {
    return run(a);
  } catch (const eng::Error& e) {
    std::fprintf(stderr, "error (%s): %s\n", eng::errorCodeName(e.code()), e.what());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
  }
  return 1;
}
