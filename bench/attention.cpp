// Λ attention against vanilla causal attention on the CPU kernel (lmi::attn::run).
//
//   lmi_bench_attention [--quick] [--json] [--threads N] [--heads H] [--kv-heads HKV]
//                       [--head-dim D] [--local W] [--portable] [--decode-only]
//                       [--layers N] [--partition] [--no-avx512] [--head-major]
//                       [--rotary-dim R] [--neox] [--q8] [--huge-pages] [--turned-keys]
//
// decode  : one query. Λ at window w: 10 global + w local keys (nLocal = limitDistance = w)
//           at stream position 2^20; vanilla at window w: causal over w keys.
// prefill : n queries against n keys at positions 0..n-1. Λ: nLocal = limitDistance = 2048,
//           nGlobal = 10; vanilla: causal over all n.
// --head-major: K/V laid out [KV head][slot][headDim] (the engine's CPU cache) instead of
//           [slot][KV head][headDim].
// --rotary-dim R, --neox: partial rotary over the first R dims (default all), NeoX pairs.
// --no-avx512: keep to the AVX2 path where the CPU also has the AVX-512 decode tiles.
// --partition: decode through runPartition(p, 0, 1), the engine's entry point (one thread),
//           instead of run().
// --turned-keys: K rows taken as stored turned by R(j mod 64) (Problem::keyTurnPeriod 64, as the
//           engine's CPU cache holds them): decode tiles turn their query rows instead of every key.
// --huge-pages: ask for K/V memory in 2 MiB pages (madvise), as the engine's CPU K/V cache does:
//           with --layers, decode's reads then miss the TLB once per 2 MiB rather than per 4 KiB.
// --layers N: decode cycles through N independent K/V caches per timed call (as a model's
//           layers do), so the keys come from memory rather than a cache warmed by the last call;
//           times are per layer.
// K/V are f16, or with --q8 ggml's Q8_0 blocks (34 bytes per 32 values). GFLOP/s counts
// 4 * headDim flops per kept (query, key, head): 2 * headDim for q.k and 2 * headDim for p.v.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <sys/mman.h>

#include "lmi/attention.h"

namespace {

using namespace lmi::attn;

struct Config {
  bool quick = false, json = false, portable = false, decodeOnly = false, partition = false, noAvx512 = false;
  bool turnedKeys = false;
  bool headMajor = false, neox = false, q8 = false;
  int rotaryDim = 0;
  int threads = 0, layers = 1;
  int nHead = 8, nHeadKV = 4, headDim = 64;
  int64_t nLocal = 2048, nGlobal = 10;
};

uint16_t toHalf(float f) {  // round to nearest even; inputs are small and normal
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t ax = x & 0x7fffffffu;
  if (ax < 0x38800000u) return sign;  // tiny: flush (test data never gets here)
  const uint32_t mant = ax & 0x7fffffu;
  uint32_t h = (((ax >> 23) - 112u) << 10) | (mant >> 13);
  const uint32_t rem = mant & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++;
  return sign | static_cast<uint16_t>(h);
}

// Memory in 2 MiB-aligned blocks that the kernel is asked to back with huge pages (madvise), when
// gHugePages is set (--huge-pages).
bool gHugePages = false;
template <class T>
struct HugeAllocator {
  using value_type = T;
  HugeAllocator() = default;
  template <class U>
  HugeAllocator(const HugeAllocator<U>&) {}
  T* allocate(size_t n) {
    constexpr size_t kHuge = size_t(2) << 20;
    const size_t bytes = (n * sizeof(T) + kHuge - 1) / kHuge * kHuge;
    void* p = std::aligned_alloc(kHuge, bytes);
    if (p == nullptr) throw std::bad_alloc();
    if (gHugePages) madvise(p, bytes, MADV_HUGEPAGE);
    return static_cast<T*>(p);
  }
  void deallocate(T* p, size_t) { std::free(p); }
  bool operator==(const HugeAllocator&) const { return true; }
  bool operator!=(const HugeAllocator&) const { return false; }
};

struct Buffers {
  std::vector<float> q, out;
  std::vector<uint16_t, HugeAllocator<uint16_t>> k, v;
  std::vector<uint8_t, HugeAllocator<uint8_t>> kq, vq;  // --q8: random rows in Q8_0 blocks (read instead of k, v)
  std::vector<int64_t> slotPos, qPos;
};

void fillRandom(Buffers& b, const Config& c, int nQ, int64_t nSlot, uint64_t seed) {
  uint64_t s = seed;
  auto next = [&s] {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<float>((s >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
  };
  b.q.resize(static_cast<size_t>(nQ) * c.nHead * c.headDim);
  for (auto& x : b.q) x = next();
  const size_t kv = static_cast<size_t>(nSlot) * c.nHeadKV * c.headDim;
  b.k.resize(kv);
  b.v.resize(kv);
  for (auto& x : b.k) x = toHalf(next());
  for (auto& x : b.v) x = toHalf(next());
  if (c.q8) {
    // Values in [-1, 1]: every block's scale is 1/127 and q spans the whole int8 range.
    const uint16_t d = toHalf(1.0f / 127.0f);
    for (auto* q : {&b.kq, &b.vq}) {
      q->resize(kv / 32 * 34);
      for (size_t blk = 0; blk < kv / 32; blk++) {
        uint8_t* o = q->data() + blk * 34;
        std::memcpy(o, &d, 2);
        for (int i = 0; i < 32; i++) o[2 + i] = static_cast<uint8_t>(static_cast<int8_t>(std::lround(next() * 127.0f)));
      }
    }
  }
  b.out.assign(b.q.size(), 0.0f);
}

Problem problemFor(Buffers& b, const Config& c, bool lambda, int64_t nLocal, int64_t origin) {
  Problem p;
  p.nQ = static_cast<int>(b.qPos.size());
  p.nHead = c.nHead;
  p.nHeadKV = c.nHeadKV;
  p.headDim = c.headDim;
  p.nSlot = static_cast<int64_t>(b.slotPos.size());
  p.q = b.q.data();
  p.k = c.q8 ? static_cast<const void*>(b.kq.data()) : b.k.data();
  p.v = c.q8 ? static_cast<const void*>(b.vq.data()) : b.v.data();
  p.kvType = c.q8 ? KVType::Q8_0 : KVType::F16;
  p.pe.rotaryDim = c.rotaryDim;
  p.pe.pairing = c.neox ? RopePairing::NeoX : RopePairing::Normal;
  p.keyTurnPeriod = c.turnedKeys ? 64 : 0;
  if (c.headMajor) {  // the buffers hold random rows: only the addressing changes
    p.kSlotStride = p.vSlotStride = c.headDim;
    p.kHeadStride = p.vHeadStride = p.nSlot * c.headDim;
  }
  p.slotPos = b.slotPos.data();
  p.qPos = b.qPos.data();
  p.scale = 1.0f / std::sqrt(static_cast<float>(c.headDim));
  p.mask.lambda = lambda;
  p.mask.origin = origin;
  p.mask.nGlobal = c.nGlobal;
  p.mask.nLocal = nLocal;
  p.mask.limitDistance = nLocal;
  p.out = b.out.data();
  return p;
}

// Seconds per call: the median of calls repeated until minSeconds have passed (at least
// minReps calls); the median keeps a busy machine's hiccups out of short decode timings.
double timeCalls(const std::vector<Problem>& ps, const RunOptions& o, double minSeconds, int minReps,
                 bool warmUp = true, bool partition = false) {
  auto call = [&](const Problem& p) {
    if (partition) runPartition(p, 0, 1, o);
    else run(p, o);
  };
  if (warmUp) call(ps[0]);  // scratch, RoPE table
  std::vector<double> times;
  double total = 0.0;
  do {
    const auto t0 = std::chrono::steady_clock::now();
    for (const Problem& p : ps) call(p);
    const double t =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / static_cast<double>(ps.size());
    times.push_back(t);
    total += t;
  } while (total < minSeconds || static_cast<int>(times.size()) < minReps);
  std::nth_element(times.begin(), times.begin() + times.size() / 2, times.end());
  return times[times.size() / 2];
}

double timeCall(const Problem& p, const RunOptions& o, double minSeconds, int minReps, bool warmUp = true) {
  return timeCalls({p}, o, minSeconds, minReps, warmUp);
}

// Kept (query, key) pairs per head for a query at position i of a stream starting at 0.
int64_t keptPairs(int64_t i, bool lambda, int64_t nLocal, int64_t nGlobal) {
  if (!lambda) return i + 1;
  const int64_t local = std::min(i + 1, nLocal);
  const int64_t far = i + 1 - local;  // keys at distance >= nLocal
  return local + std::min(far, nGlobal);
}

// The kernel path these options select on this CPU.
const char* pathName(const Config& c, bool longName) {
  if (c.portable || !cpuHasAvx2Fma()) return "portable";
  if (!c.noAvx512 && cpuHasAvx512()) return longName ? "AVX2/FMA/F16C + AVX-512 decode tiles" : "avx512";
  return longName ? "AVX2/FMA/F16C" : "avx2";
}

struct Row {
  std::string kind;
  int64_t size;
  double lamSec, vanSec, lamFlops, vanFlops, tokens;
};

void print(const std::vector<Row>& rows, const Config& c, int threads) {
  if (c.json) {
    std::printf("{\"shape\":{\"nHead\":%d,\"nHeadKV\":%d,\"headDim\":%d,\"kv\":\"%s\"},\"threads\":%d,"
                "\"path\":\"%s\",\"nLocal\":%lld,\"nGlobal\":%lld,\"rows\":[",
                c.nHead, c.nHeadKV, c.headDim, c.q8 ? "q8_0" : "f16", threads,
                pathName(c, false), (long long)c.nLocal, (long long)c.nGlobal);
    for (size_t i = 0; i < rows.size(); i++) {
      const Row& r = rows[i];
      std::printf("%s{\"kind\":\"%s\",\"size\":%lld,\"lambda\":{\"seconds\":%.6g,\"tokensPerSecond\":%.6g,"
                  "\"gflops\":%.6g},\"vanilla\":{\"seconds\":%.6g,\"tokensPerSecond\":%.6g,\"gflops\":%.6g},"
                  "\"speedup\":%.4g}",
                  i ? "," : "", r.kind.c_str(), (long long)r.size, r.lamSec, r.tokens / r.lamSec,
                  r.lamFlops / r.lamSec * 1e-9, r.vanSec, r.tokens / r.vanSec, r.vanFlops / r.vanSec * 1e-9,
                  r.vanSec / r.lamSec);
    }
    std::printf("]}\n");
    return;
  }
  std::printf("\n%-8s %7s | %11s %12s %8s | %11s %12s %8s | %8s\n", "case", "size", "Λ ms", "Λ tok/s", "GFLOP/s",
              "vanilla ms", "vanilla tok/s", "GFLOP/s", "speed-up");
  for (const Row& r : rows) {
    std::printf("%-8s %7lld | %11.3f %12.1f %8.1f | %11.3f %12.1f %8.1f | %7.2fx\n", r.kind.c_str(),
                (long long)r.size, r.lamSec * 1e3, r.tokens / r.lamSec, r.lamFlops / r.lamSec * 1e-9, r.vanSec * 1e3,
                r.tokens / r.vanSec, r.vanFlops / r.vanSec * 1e-9, r.vanSec / r.lamSec);
  }
  std::printf("speed-up = vanilla time / Λ time (same shape, same kernel, same threads)\n");
}

int usage() {
  std::fprintf(stderr,
               "usage: lmi_bench_attention [--quick] [--json] [--threads N] [--heads H] [--kv-heads HKV]\n"
               "                           [--head-dim D] [--local W] [--portable] [--decode-only] [--layers N]\n"
               "                           [--partition] [--no-avx512] [--head-major] [--rotary-dim R] [--neox] [--q8]\n"
               "                           [--huge-pages] [--turned-keys]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  Config c;
  for (int a = 1; a < argc; a++) {
    const std::string s = argv[a];
    auto value = [&](int& dst) {
      if (a + 1 >= argc) return false;
      dst = std::atoi(argv[++a]);
      return dst > 0;
    };
    int tmp = 0;
    if (s == "--quick") c.quick = true;
    else if (s == "--json") c.json = true;
    else if (s == "--portable") c.portable = true;
    else if (s == "--decode-only") c.decodeOnly = true;
    else if (s == "--partition") c.partition = true;
    else if (s == "--huge-pages") gHugePages = true;
    else if (s == "--turned-keys") c.turnedKeys = true;
    else if (s == "--no-avx512") c.noAvx512 = true;
    else if (s == "--head-major") c.headMajor = true;
    else if (s == "--neox") c.neox = true;
    else if (s == "--q8") c.q8 = true;
    else if (s == "--rotary-dim") { if (!value(c.rotaryDim)) return usage(); }
    else if (s == "--threads") { if (!value(c.threads)) return usage(); }
    else if (s == "--heads") { if (!value(c.nHead)) return usage(); }
    else if (s == "--kv-heads") { if (!value(c.nHeadKV)) return usage(); }
    else if (s == "--head-dim") { if (!value(c.headDim)) return usage(); }
    else if (s == "--layers") { if (!value(c.layers)) return usage(); }
    else if (s == "--local") { if (!value(tmp)) return usage(); c.nLocal = tmp; }
    else return usage();
  }
  if (c.nHead % c.nHeadKV) return usage();
  const int threads = c.threads > 0 ? c.threads : std::max(1u, std::thread::hardware_concurrency());
  RunOptions o;
  o.threads = threads;
  o.forcePortable = c.portable;
  o.noAvx512 = c.noAvx512;
  if (!c.json)
    std::printf("lmi attention bench: nHead %d, nHeadKV %d, headDim %d, %s K/V, %d thread(s), %s path%s\n", c.nHead,
                c.nHeadKV, c.headDim, c.q8 ? "q8_0" : "f16", threads, pathName(c, true),
                c.quick ? ", quick" : "");

  std::vector<Row> rows;
  const double flopsPerPair = 4.0 * c.headDim * c.nHead;

  // Decode: one query.
  const std::vector<int64_t> windows =
      c.quick ? std::vector<int64_t>{512, 2048} : std::vector<int64_t>{512, 1024, 2048, 4096, 8192};
  for (int64_t w : windows) {
    const int64_t P = int64_t(1) << 20;  // stream position of the Λ query
    std::vector<Buffers> lam(c.layers), van(c.layers);
    std::vector<Problem> lamP, vanP;
    for (int l = 0; l < c.layers; l++) {
      // Λ ring buffer: nGlobal pinned first tokens, then the last w positions (rotated).
      for (int64_t t = 0; t < c.nGlobal; t++) lam[l].slotPos.push_back(t);
      for (int64_t t = 0; t < w; t++) lam[l].slotPos.push_back(P - w + 1 + (t + w / 3) % w);
      lam[l].qPos = {P};
      fillRandom(lam[l], c, 1, static_cast<int64_t>(lam[l].slotPos.size()), 1 + 2 * l);
      for (int64_t t = 0; t < w; t++) van[l].slotPos.push_back(t);
      van[l].qPos = {w - 1};
      fillRandom(van[l], c, 1, w, 2 + 2 * l);
      lamP.push_back(problemFor(lam[l], c, true, w, 0));
      vanP.push_back(problemFor(van[l], c, false, w, 0));
    }
    const double minSec = c.quick ? 0.1 : 0.3;
    Row r;
    r.kind = "decode";
    r.size = w;
    r.tokens = 1;
    r.lamSec = timeCalls(lamP, o, minSec, 10, true, c.partition);
    r.vanSec = timeCalls(vanP, o, minSec, 10, true, c.partition);
    r.lamFlops = flopsPerPair * keptPairs(P, true, w, c.nGlobal);
    r.vanFlops = flopsPerPair * keptPairs(w - 1, false, w, c.nGlobal);
    rows.push_back(r);
    if (!c.json) std::fprintf(stderr, "  decode w=%lld done\n", (long long)w);
  }

  // Prefill: n queries over n keys.
  const std::vector<int64_t> sizes =
      c.decodeOnly ? std::vector<int64_t>{}
      : c.quick    ? std::vector<int64_t>{4096, 8192}
                   : std::vector<int64_t>{4096, 16384, 65536};
  for (int64_t n : sizes) {
    Buffers b;
    for (int64_t t = 0; t < n; t++) b.slotPos.push_back(t);
    b.qPos = b.slotPos;
    fillRandom(b, c, static_cast<int>(n), n, 3);
    Row r;
    r.kind = "prefill";
    r.size = n;
    r.tokens = static_cast<double>(n);
    r.lamSec = timeCall(problemFor(b, c, true, c.nLocal, 0), o, 0.0, n <= 16384 ? 3 : 1, n <= 16384);
    if (!c.json) std::fprintf(stderr, "  prefill n=%lld Λ done (%.2f s)\n", (long long)n, r.lamSec);
    r.vanSec = timeCall(problemFor(b, c, false, c.nLocal, 0), o, 0.0, 1, n <= 4096);
    if (!c.json) std::fprintf(stderr, "  prefill n=%lld vanilla done (%.2f s)\n", (long long)n, r.vanSec);
    r.lamFlops = r.vanFlops = 0.0;
    for (int64_t i = 0; i < n; i++) {
      r.lamFlops += flopsPerPair * keptPairs(i, true, c.nLocal, c.nGlobal);
      r.vanFlops += flopsPerPair * keptPairs(i, false, c.nLocal, c.nGlobal);
    }
    rows.push_back(r);
  }
  print(rows, c, threads);
  return 0;
}
