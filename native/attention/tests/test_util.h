// Small helpers shared by the attention tests: a fixed-seed RNG, a check macro,
// and a self-contained problem (owning its buffers) with a random generator.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

#include "lmi/attention.h"
#include "reference.h"

namespace lmi::attn::test {

inline int& failures() {
  static int n = 0;
  return n;
}

#define LMI_CHECK(cond, ...)                                                  \
  do {                                                                        \
    if (!(cond)) {                                                            \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond); \
      std::fprintf(stderr, __VA_ARGS__);                                      \
      std::fprintf(stderr, "\n");                                             \
      ::lmi::attn::test::failures()++;                                        \
    }                                                                         \
  } while (0)

// A kernel path this CPU has: AVX-512 decode tiles (the default where present), AVX2, portable.
struct KernelPath {
  const char* name;
  RunOptions options;
};

inline std::vector<KernelPath> kernelPaths() {
  std::vector<KernelPath> paths;
  RunOptions o;
  if (cpuHasAvx512()) paths.push_back({"avx512", o});
  o.noAvx512 = true;
  if (cpuHasAvx2Fma()) paths.push_back({"avx2", o});
  o.forcePortable = true;
  paths.push_back({"portable", o});
  return paths;
}

inline int finish(const char* name) {
  if (failures()) {
    std::fprintf(stderr, "%s: %d check(s) failed\n", name, failures());
    return 1;
  }
  std::printf("%s: ok\n", name);
  return 0;
}

// splitmix64: small, fixed-seed, identical everywhere.
class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed) {}
  uint64_t next() {
    uint64_t z = (s_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  int64_t range(int64_t lo, int64_t hi) {  // inclusive
    return lo + static_cast<int64_t>(next() % static_cast<uint64_t>(hi - lo + 1));
  }
  double uniform() { return static_cast<double>(next() >> 11) * (1.0 / 9007199254740992.0); }
  float sym() { return static_cast<float>(2.0 * uniform() - 1.0); }
  bool coin(double p = 0.5) { return uniform() < p; }
  template <class T>
  const T& pick(const std::vector<T>& v) {
    return v[static_cast<size_t>(range(0, static_cast<int64_t>(v.size()) - 1))];
  }
  template <class T>
  void shuffle(std::vector<T>& v) {
    for (size_t i = v.size(); i > 1; i--) std::swap(v[i - 1], v[static_cast<size_t>(range(0, i - 1))]);
  }

 private:
  uint64_t s_;
};

// A problem that owns its data. problem() returns a Problem pointing into it.
struct Case {
  int nQ = 1, nHead = 1, nHeadKV = 1, headDim = 8;
  KVType kvType = KVType::F32;
  int64_t kStride = 0, vStride = 0;          // between slots; 0 = dense
  int64_t kHeadStride = 0, vHeadStride = 0;  // between KV heads; 0 = headDim
  PositionEncoding pe;
  LambdaMask mask;
  TopKMiddle topK;
  int64_t keyTurnPeriod = 0;  // Problem::keyTurnPeriod (the rows are taken as stored turned)
  float scale = 1.0f;
  std::vector<float> q, kf, vf, slopes, out;
  std::vector<uint16_t> kh, vh;
  std::vector<uint8_t> kq, vq;  // Q8_0 blocks of kf, vf (whose lengths are then multiples of 32)
  std::vector<int64_t> slotPos, qPos;
  std::string what;

  int64_t nSlot() const { return static_cast<int64_t>(slotPos.size()); }
  int64_t row() const { return static_cast<int64_t>(nHeadKV) * headDim; }

  // The slot and KV-head strides of k (value = false) or v, 0s resolved.
  std::pair<int64_t, int64_t> strides(bool value) const {
    const int64_t s = value ? vStride : kStride, h = value ? vHeadStride : kHeadStride;
    return {s ? s : row(), h ? h : headDim};
  }

  // Elements a k (value = false) or v array spans with its strides.
  int64_t extent(bool value) const {
    const auto [s, h] = strides(value);
    return nSlot() == 0 ? 0 : (nSlot() - 1) * s + (nHeadKV - 1) * h + headDim;
  }

  // Moves k and v (after fill) to the head-major layout of an engine cache: row (s, g) at
  // s * (headDim + slotPad) + g * (nSlot * (headDim + slotPad) + headPad). The padding is garbage.
  void toHeadMajor(int64_t slotPad, int64_t headPad) {
    for (bool value : {false, true}) {
      const auto [oldS, oldH] = strides(value);
      const int64_t newS = headDim + slotPad, newH = nSlot() * newS + headPad;
      (value ? vStride : kStride) = newS;
      (value ? vHeadStride : kHeadStride) = newH;
      const size_t n = static_cast<size_t>(extent(value));
      std::vector<float>& f = value ? vf : kf;
      std::vector<uint16_t>& h = value ? vh : kh;
      std::vector<float> nf(n, 1e30f);
      std::vector<uint16_t> nh(kvType == KVType::F16 ? n : 0, 0x7c00);  // +inf
      for (int64_t s = 0; s < nSlot(); s++)
        for (int g = 0; g < nHeadKV; g++)
          for (int d = 0; d < headDim; d++) {
            const size_t from = static_cast<size_t>(s * oldS + g * oldH + d);
            const size_t to = static_cast<size_t>(s * newS + g * newH + d);
            nf[to] = f[from];
            if (!nh.empty()) nh[to] = h[from];
          }
      f.swap(nf);
      if (!nh.empty()) h.swap(nh);
    }
    quantize();
  }

  // kq, vq from kf, vf when kvType is Q8_0 (strides and headDim are then multiples of 32, so each
  // row is whole blocks; padding becomes blocks nobody reads).
  void quantize() {
    if (kvType != KVType::Q8_0) return;
    for (bool value : {false, true}) {
      std::vector<float>& f = value ? vf : kf;
      std::vector<uint8_t>& b = value ? vq : kq;
      f.resize((f.size() + 31) / 32 * 32, 0.0f);
      b.assign(f.size() / 32 * 34, 0);
      ref::quantizeQ8_0(f.data(), static_cast<int64_t>(f.size()), b.data());
    }
  }

  // Fills q, k, v with values in [-1, 1] (k and v rounded to f16 when kvType is F16).
  void fill(Rng& rng) {
    q.resize(static_cast<size_t>(nQ) * nHead * headDim);
    for (auto& x : q) x = rng.sym();
    const size_t kn = static_cast<size_t>(extent(false)), vn = static_cast<size_t>(extent(true));
    kf.assign(kn, 0.0f);
    vf.assign(vn, 0.0f);
    for (auto& x : kf) x = rng.sym();
    for (auto& x : vf) x = rng.sym();
    if (kvType == KVType::F16) {
      kh.resize(kn);
      vh.resize(vn);
      for (size_t i = 0; i < kn; i++) kh[i] = ref::floatToHalf(kf[i]);
      for (size_t i = 0; i < vn; i++) vh[i] = ref::floatToHalf(vf[i]);
    }
    quantize();
    if (pe.kind == Encoding::Alibi) {
      slopes.resize(nHead);
      for (int h = 0; h < nHead; h++) slopes[h] = std::pow(2.0f, -8.0f * (h + 1) / nHead);
    }
    out.assign(q.size(), NAN);
  }

  Problem problem() {
    Problem p;
    p.nQ = nQ;
    p.nHead = nHead;
    p.nHeadKV = nHeadKV;
    p.headDim = headDim;
    p.nSlot = nSlot();
    p.q = q.data();
    p.k = kvType == KVType::F16 ? static_cast<const void*>(kh.data())
          : kvType == KVType::Q8_0 ? static_cast<const void*>(kq.data()) : kf.data();
    p.v = kvType == KVType::F16 ? static_cast<const void*>(vh.data())
          : kvType == KVType::Q8_0 ? static_cast<const void*>(vq.data()) : vf.data();
    p.kvType = kvType;
    p.kSlotStride = kStride;
    p.vSlotStride = vStride;
    p.kHeadStride = kHeadStride;
    p.vHeadStride = vHeadStride;
    p.slotPos = slotPos.data();
    p.qPos = qPos.data();
    p.scale = scale;
    p.pe = pe;
    if (pe.kind == Encoding::Alibi) p.pe.alibiSlopes = slopes.data();
    p.mask = mask;
    p.topK = topK;
    p.keyTurnPeriod = keyTurnPeriod;
    p.out = out.data();
    return p;
  }
};

// Max |a - b| over rows not flagged in skip ([nQ * nHead], may be empty).
inline double maxDiff(const std::vector<float>& a, const std::vector<float>& b, int headDim,
                      const std::vector<uint8_t>& skip = {}) {
  double m = 0.0;
  for (size_t i = 0; i < a.size(); i++) {
    if (!skip.empty() && skip[i / headDim]) continue;
    const double d = std::fabs(static_cast<double>(a[i]) - static_cast<double>(b[i]));
    if (std::isnan(d)) return INFINITY;  // a NaN anywhere is a failure
    m = std::max(m, d);
  }
  return m;
}

inline bool bitEqual(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](float x, float y) {
           return std::memcmp(&x, &y, sizeof x) == 0;
         });
}

// c.out after running p (c's problem, or a variant of it over c.out) with run() when partitions is 0,
// else with runPartition(p, ith, partitions) for every ith.
inline std::vector<float> runKernel(Case& c, const Problem& p, const RunOptions& o, int partitions) {
  std::fill(c.out.begin(), c.out.end(), NAN);
  if (partitions == 0) {
    run(p, o);
  } else {
    validate(p);
    for (int ith = 0; ith < partitions; ith++) runPartition(p, ith, partitions, o);
  }
  return c.out;
}

}  // namespace lmi::attn::test
