// The CUDA kernels (lmi::attn::cuda) against the dense reference (reference.cpp) and the
// CPU kernel (lmi::attn::run): the randomized cases of test_attention_random.cpp (shared
// generator, random_case.h) on every kernel path and several key splits, plus targeted
// cases: multi-query decode, several sequences on concurrent streams, prefill with tile
// skipping at nLocal not a multiple of the 32-slot tile, ring-buffer slot orders with
// empty slots, top-k, head dims 20 and 256, no slots, shift invariance at 2^40; the queries'
// own keys and values apart from the slots (Problem::kNew/vNew) against the same rows as slots.
//
//   lmi_test_attention_cuda [cases]     (exit 77 with "no CUDA device" when there is none)
//
// Tolerances (max |diff| over outputs, rows whose k-th/(k+1)-th middle logits nearly tie
// skipped, as in the CPU test): against the reference f32 K/V 2e-4, f16 K/V 5e-4 on the
// CUDA-core path and 1e-3 on the tensor-core path (hi/lo f16 splitting); against the CPU
// kernel the same. A NaN anywhere fails.
#include <cuda_runtime.h>

#include <chrono>
#include <memory>

#include "cuda_check.h"
#include "cuda/attention_cuda_internal.h"
#include "lmi/attention_cuda.h"
#include "random_case.h"
#include "test_util.h"

using namespace lmi::attn;
using namespace lmi::attn::test;
namespace cd = lmi::attn::cuda::detail;

namespace {

// Device copies of a Case's buffers.
struct DeviceCase {
  std::vector<void*> bufs;
  Problem p;
  float* out = nullptr;
  size_t outN = 0;

  template <class T>
  T* upload(const std::vector<T>& v) {
    if (v.empty()) return nullptr;
    void* d = nullptr;
    CUDA_OK(cudaMalloc(&d, v.size() * sizeof(T)));
    CUDA_OK(cudaMemcpy(d, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
    bufs.push_back(d);
    return static_cast<T*>(d);
  }
  explicit DeviceCase(Case& c) {
    p = c.problem();
    p.q = upload(c.q);
    if (c.kvType == KVType::F16) {
      p.k = upload(c.kh);
      p.v = upload(c.vh);
    } else {
      p.k = upload(c.kf);
      p.v = upload(c.vf);
    }
    p.slotPos = upload(c.slotPos);
    p.qPos = upload(c.qPos);
    if (c.pe.kind == Encoding::Alibi) p.pe.alibiSlopes = upload(c.slopes);
    outN = c.out.size();
    std::vector<float> nan(outN, NAN);
    out = upload(nan);
    p.out = out;
  }
  ~DeviceCase() {
    for (void* b : bufs) cudaFree(b);
  }
  DeviceCase(const DeviceCase&) = delete;
  DeviceCase& operator=(const DeviceCase&) = delete;

  std::vector<float> run(const cd::RunOptions& o, cudaStream_t st = nullptr) {
    std::vector<float> nan(outN, NAN);
    CUDA_OK(cudaMemcpy(out, nan.data(), outN * sizeof(float), cudaMemcpyHostToDevice));
    cd::runWith(p, st, o);
    return fetch(st);
  }
  std::vector<float> fetch(cudaStream_t st) {
    CUDA_OK(cudaStreamSynchronize(st));
    CUDA_OK(cudaGetLastError());
    std::vector<float> h(outN);
    CUDA_OK(cudaMemcpy(h.data(), out, outN * sizeof(float), cudaMemcpyDeviceToHost));
    return h;
  }
};

double tolFor(const Case& c, cd::Path path) {
  if (c.kvType == KVType::F32) return 2e-4;
  return path == cd::Path::Mma ? 1e-3 : 5e-4;
}

const char* pathName(cd::Path p) { return p == cd::Path::Mma ? "mma" : p == cd::Path::Scalar ? "scalar" : "auto"; }

double worst[2][3];  // [f16][path]

// What a GPU run of c must match: the dense reference and the CPU kernel.
struct Expected {
  ref::Result want;
  std::vector<float> cpu;
};
Expected expected(Case& c) {
  Expected e{ref::run(c.problem()), {}};
  std::fill(c.out.begin(), c.out.end(), NAN);
  run(c.problem());
  e.cpu = c.out;
  return e;
}

// Runs dc on the GPU with each option set and checks it against ex (of the Case c, for the
// tolerance and the message; label says which form of it dc is).
void checkRuns(const Case& c, DeviceCase& dc, const Expected& ex, const std::vector<cd::RunOptions>& opts,
               const char* label) {
  for (const cd::RunOptions& o : opts) {
    const cd::RunPlan pl = cd::plan(dc.p, o);
    const std::vector<float> got = dc.run(o);
    const double tol = tolFor(c, pl.path);
    const double dRef = maxDiff(got, ex.want.out, c.headDim, ex.want.ambiguous);
    const double dCpu = maxDiff(got, ex.cpu, c.headDim, ex.want.ambiguous);
    double& w = worst[c.kvType == KVType::F16][static_cast<int>(pl.path)];
    w = std::max(w, dRef);
    LMI_CHECK(dRef <= tol, "%s%s [%s splits=%d tiles=%d] vs reference: max|diff| = %g (tol %g)", c.what.c_str(), label,
              pathName(pl.path), pl.nSplit, int(pl.tileRange), dRef, tol);
    LMI_CHECK(dCpu <= tol, "%s%s [%s splits=%d tiles=%d] vs CPU kernel: max|diff| = %g (tol %g)", c.what.c_str(), label,
              pathName(pl.path), pl.nSplit, int(pl.tileRange), dCpu, tol);
  }
}

// Runs c on the GPU with each option set and checks it against the reference and the CPU kernel.
void checkCase(Case& c, const std::vector<cd::RunOptions>& opts) {
  const Expected ex = expected(c);
  DeviceCase dc(c);
  checkRuns(c, dc, ex, opts, "");
}

std::vector<cd::RunOptions> allPaths(const Case& c, int idx) {
  std::vector<cd::RunOptions> v;
  cd::RunOptions o;
  v.push_back(o);  // automatic
  o.path = cd::Path::Scalar;
  o.splits = 1;
  o.tileRange = idx % 2;
  v.push_back(o);
  o.splits = 3 + idx % 5;
  o.tileRange = 1 - idx % 2;
  v.push_back(o);
  if (c.kvType == KVType::F16 && c.headDim <= 128) {
    o.path = cd::Path::Mma;
    o.splits = 1;
    o.tileRange = 1;
    v.push_back(o);
    o.splits = 2 + idx % 3;
    o.tileRange = idx % 2;
    v.push_back(o);
  }
  return v;
}

// A stream of n tokens at base.. in a ring buffer: nGlobal pinned slots, then W slots
// written round-robin (the write head anywhere), some empty slots.
Case ringCase(Rng& rng, int nHead, int nHeadKV, int D, KVType kv, int64_t base, int64_t n, int64_t nGlobal,
              int64_t nLocal, int64_t W, int nQ, Encoding enc) {
  Case c;
  c.nHead = nHead;
  c.nHeadKV = nHeadKV;
  c.headDim = D;
  c.kvType = kv;
  c.pe.kind = enc;
  c.pe.pairing = rng.coin() ? RopePairing::Normal : RopePairing::NeoX;
  c.scale = 1.0f / std::sqrt(static_cast<float>(D));
  c.mask.origin = base;
  c.mask.nGlobal = nGlobal;
  c.mask.nLocal = nLocal;
  c.mask.limitDistance = nLocal;
  for (int64_t t = 0; t < std::min(n, nGlobal); t++) c.slotPos.push_back(base + t);
  std::vector<int64_t> ring(W, -1);
  for (int64_t t = std::max(nGlobal, n - W); t < n; t++) ring[(t - nGlobal) % W] = base + t;
  c.slotPos.insert(c.slotPos.end(), ring.begin(), ring.end());
  for (int64_t t = n - nQ; t < n; t++) c.qPos.push_back(base + t);
  c.nQ = nQ;
  char buf[256];
  std::snprintf(buf, sizeof buf, "ring: nHead=%d nHeadKV=%d D=%d kv=%s base=%lld n=%lld nGlobal=%lld nLocal=%lld W=%lld nQ=%d",
                nHead, nHeadKV, D, kv == KVType::F16 ? "f16" : "f32", (long long)base, (long long)n, (long long)nGlobal,
                (long long)nLocal, (long long)W, nQ);
  c.what = buf;
  c.fill(rng);
  return c;
}

// Problem::kNew/vNew, the queries' own keys and values apart from the slots, against the same
// rows appended as nQ more slots at positions qPos: both forms on the GPU must match the
// reference and the CPU kernel of the appended one. c becomes the slots-only form first:
// repeated query positions are dropped and slots at or after the first query position are
// emptied, so that no position repeats.
void checkNewKeys(Rng& rng, Case c, int idx) {
  std::vector<int64_t> qs;
  for (int64_t i : c.qPos)
    if (std::find(qs.begin(), qs.end(), i) == qs.end()) qs.push_back(i);
  c.qPos = qs;
  c.nQ = static_cast<int>(qs.size());
  const int64_t first = *std::min_element(qs.begin(), qs.end());
  for (int64_t& j : c.slotPos)
    if (j >= first) j = -1;
  c.fill(rng);

  // The own rows, [nQ][stride], padding zero; f16 copies when the case is f16.
  const int64_t row = c.row();
  const bool f16 = c.kvType == KVType::F16;
  const int64_t kNewStride = row + rng.pick(std::vector<int64_t>{0, 0, 1, 3, 8});
  const int64_t vNewStride = row + rng.pick(std::vector<int64_t>{0, 0, 1, 3, 8});
  auto rows = [&](int64_t stride) {
    std::vector<float> x(static_cast<size_t>(c.nQ * stride), 0.0f);
    for (int i = 0; i < c.nQ; i++)
      for (int64_t e = 0; e < row; e++) x[i * stride + e] = rng.sym();
    return x;
  };
  auto halves = [](const std::vector<float>& x) {
    std::vector<uint16_t> h(x.size());
    for (size_t e = 0; e < x.size(); e++) h[e] = ref::floatToHalf(x[e]);
    return h;
  };
  const std::vector<float> kNew = rows(kNewStride), vNew = rows(vNewStride);
  const std::vector<uint16_t> kNewH = halves(kNew), vNewH = halves(vNew);

  // The appended form: the own rows copied into slots nSlot.. at the slots' strides.
  Case cat = c;
  auto append = [&](auto& dst, const auto& src, int64_t srcStride, int64_t dstStride) {
    for (int i = 0; i < c.nQ; i++) {
      const auto from = src.begin() + i * srcStride;
      dst.insert(dst.end(), from, from + row);
      dst.resize(dst.size() + static_cast<size_t>(dstStride - row));
    }
  };
  const int64_t ks = c.kStride ? c.kStride : row, vs = c.vStride ? c.vStride : row;
  append(cat.kf, kNew, kNewStride, ks);
  append(cat.vf, vNew, vNewStride, vs);
  if (f16) {
    append(cat.kh, kNewH, kNewStride, ks);
    append(cat.vh, vNewH, vNewStride, vs);
  }
  cat.slotPos.insert(cat.slotPos.end(), c.qPos.begin(), c.qPos.end());

  const Expected ex = expected(cat);
  DeviceCase whole(cat), apart(c);
  apart.p.kNew = f16 ? static_cast<const void*>(apart.upload(kNewH)) : apart.upload(kNew);
  apart.p.vNew = f16 ? static_cast<const void*>(apart.upload(vNewH)) : apart.upload(vNew);
  apart.p.kNewStride = kNewStride == row ? 0 : kNewStride;
  apart.p.vNewStride = vNewStride == row ? 0 : vNewStride;
  char label[128];
  std::snprintf(label, sizeof label, " (own rows apart: nSlot=%lld, strides %lld/%lld)", (long long)c.nSlot(),
                (long long)apart.p.kNewStride, (long long)apart.p.vNewStride);
  const std::vector<cd::RunOptions> opts = allPaths(cat, idx);
  checkRuns(cat, whole, ex, opts, " (own rows appended as slots)");
  checkRuns(cat, apart, ex, opts, label);
}

// The own-rows cases: the random generator's, then prefill and decode on a ring buffer (its
// 410 slots end mid-tile) in f16 and f32 with and without top-k, and a call with no slots.
void newKeys(Rng& rng, int nRandom) {
  for (int idx = 0; idx < nRandom; idx++) checkNewKeys(rng, randomCase(rng, idx), idx);
  for (KVType kv : {KVType::F16, KVType::F32}) {
    const bool f16 = kv == KVType::F16;
    Case c = ringCase(rng, 8, 2, 128, kv, 1000, 1200, 10, 100, 400, 130, Encoding::Rope);
    if (f16) c.topK = {5, 50};
    checkNewKeys(rng, c, 0);
    Case d = ringCase(rng, 32, 8, 128, kv, 5, 3000, 10, 1000, 1100, 1, Encoding::Rope);
    if (!f16) d.topK = {17, 500};
    checkNewKeys(rng, d, 1);
  }
  Case e = ringCase(rng, 4, 2, 64, KVType::F16, 0, 40, 4, 16, 40, 40, Encoding::Alibi);
  e.slotPos.clear();
  checkNewKeys(rng, e, 2);
}

void targeted(Rng& rng) {
  // Prefill with tile skipping: nLocal 100 and 75 (not multiples of 32), long ring, a chunk of queries.
  for (KVType kv : {KVType::F16, KVType::F32})
    for (int64_t nLocal : {int64_t(100), int64_t(75)}) {
      Case c = ringCase(rng, 8, 2, 128, kv, 1000, 1200, 10, nLocal, 400, 130, Encoding::Rope);
      checkCase(c, allPaths(c, 0));
    }
  // ALiBi and no encoding, GQA 1, head dim 64, the mma path.
  for (Encoding e : {Encoding::Alibi, Encoding::None}) {
    Case c = ringCase(rng, 4, 4, 64, KVType::F16, 0, 700, 4, 160, 300, 96, e);
    checkCase(c, allPaths(c, 1));
  }
  // Top-k middle attention over a long middle, k = 5 at nLocal / 2.
  {
    Case c = ringCase(rng, 8, 4, 64, KVType::F16, 50, 900, 10, 64, 880, 40, Encoding::Rope);
    c.topK.k = 5;
    c.topK.insertAt = 32;
    checkCase(c, allPaths(c, 2));
    c.topK.k = 17;
    c.topK.insertAt = 700;
    checkCase(c, allPaths(c, 3));
  }
  // Multi-query decode: 8 queries at scattered positions (one row group each).
  {
    Case c = ringCase(rng, 32, 8, 128, KVType::F16, 5, 3000, 10, 1000, 1100, 1, Encoding::Rope);
    c.qPos.clear();
    for (int q = 0; q < 8; q++) c.qPos.push_back(5 + 2999 - rng.range(0, 90));
    c.nQ = 8;
    c.fill(rng);
    c.what += " (8 scattered decode queries)";
    checkCase(c, allPaths(c, 4));
  }
  // Head dims 20 (odd vector widths) and 256 (scalar only), f32 and f16, partial rotary.
  for (int D : {20, 256}) {
    Case c = ringCase(rng, 4, 2, D, D == 20 ? KVType::F16 : KVType::F32, 0, 300, 3, 50, 120, 20, Encoding::Rope);
    c.pe.rotaryDim = D / 2;
    checkCase(c, allPaths(c, 5));
  }
  // No slots at all, and queries before every key: zeros.
  {
    Case c = ringCase(rng, 2, 1, 64, KVType::F16, 100, 50, 4, 16, 40, 3, Encoding::Rope);
    c.slotPos.clear();
    c.fill(rng);
    DeviceCase dc(c);
    const std::vector<float> got = dc.run({});
    LMI_CHECK(maxDiff(got, std::vector<float>(got.size(), 0.0f), 64) == 0.0, "nSlot = 0 must give zeros");
    Case d = ringCase(rng, 2, 1, 64, KVType::F16, 100, 50, 4, 16, 40, 3, Encoding::Rope);
    d.qPos = {0, 1, 99};  // before the stream's first key
    d.fill(rng);
    DeviceCase dd(d);
    for (cd::Path path : {cd::Path::Scalar, cd::Path::Mma}) {
      cd::RunOptions o;
      o.path = path;
      const std::vector<float> z = dd.run(o);
      LMI_CHECK(maxDiff(z, std::vector<float>(z.size(), 0.0f), 64) == 0.0, "a query with no kept key must give zeros (%s)",
                pathName(path));
    }
  }
  // Shift invariance: the same stream at base 0 and at 2^40 + 7.
  {
    Rng r1(99), r2(99);
    Case a = ringCase(r1, 8, 2, 128, KVType::F16, 0, 900, 10, 256, 400, 64, Encoding::Rope);
    Case b = ringCase(r2, 8, 2, 128, KVType::F16, (int64_t(1) << 40) + 7, 900, 10, 256, 400, 64, Encoding::Rope);
    DeviceCase da(a), db(b);
    for (cd::Path path : {cd::Path::Scalar, cd::Path::Mma}) {
      cd::RunOptions o;
      o.path = path;
      const double d = maxDiff(da.run(o), db.run(o), 128);
      LMI_CHECK(d <= 2e-5, "shift by 2^40 changed the output by %g (%s)", d, pathName(path));
    }
  }
  // Several sequences at once: independent problems on their own streams, concurrently.
  {
    constexpr int kSeq = 4;
    std::vector<std::unique_ptr<Case>> cs;
    std::vector<std::unique_ptr<DeviceCase>> ds;
    std::vector<cudaStream_t> sts(kSeq);
    for (int s = 0; s < kSeq; s++) {
      cs.push_back(std::make_unique<Case>(
          ringCase(rng, 8, 2, 128, KVType::F16, 1000 * s, 600 + 100 * s, 10, 200, 300, 1 + 31 * (s % 2), Encoding::Rope)));
      ds.push_back(std::make_unique<DeviceCase>(*cs.back()));
      CUDA_OK(cudaStreamCreateWithFlags(&sts[s], cudaStreamNonBlocking));
    }
    for (int round = 0; round < 3; round++) {
      for (int s = 0; s < kSeq; s++) cd::runWith(ds[s]->p, sts[s], {});
      for (int s = 0; s < kSeq; s++) {
        const std::vector<float> got = ds[s]->fetch(sts[s]);
        const ref::Result want = ref::run(cs[s]->problem());
        const double d = maxDiff(got, want.out, 128, want.ambiguous);
        LMI_CHECK(d <= 1e-3, "stream %d round %d: max|diff| %g", s, round, d);
      }
    }
    for (cudaStream_t st : sts) CUDA_OK(cudaStreamDestroy(st));
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (!cuda::compiled() || cuda::deviceCount() == 0) {
    std::printf("no CUDA device\n");
    return 77;
  }
  cudaDeviceProp prop{};
  CUDA_OK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s (sm_%d%d, %d SMs)\n", prop.name, prop.major, prop.minor, prop.multiProcessorCount);
  const int nCases = argc > 1 ? std::atoi(argv[1]) : 240;
  const auto t0 = std::chrono::steady_clock::now();

  // Malformed problems throw InvalidArgument before anything runs.
  {
    Problem p;
    bool threw = false;
    try {
      cuda::run(p);
    } catch (const InvalidArgument&) {
      threw = true;
    }
    LMI_CHECK(threw, "an empty Problem must throw InvalidArgument");
  }

  Rng rng(20230816);  // the CPU test's seed: the same cases
  for (int idx = 0; idx < nCases; idx++) {
    Case c = randomCase(rng, idx);
    checkCase(c, allPaths(c, idx));
  }
  const double tRandom = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  Rng rng2(424242);
  targeted(rng2);
  Rng rng3(31337);
  newKeys(rng3, nCases / 4);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%d random cases in %.1f s, targeted cases in %.1f s\n", nCases, tRandom, secs - tRandom);
  std::printf("worst max|diff| vs reference: f32 scalar %.3g; f16 scalar %.3g, mma %.3g\n", worst[0][1], worst[1][1],
              worst[1][2]);
  return finish("test_attention_cuda");
}
