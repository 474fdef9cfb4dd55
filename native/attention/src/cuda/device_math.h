// The per-element math of the CUDA kernels, as __host__ __device__ functions so that the
// host compiler can unit-test it (tests/test_cuda_math.cpp runs in every build, GPU or not).
// Plain C++17 when not compiled by nvcc.
//
//   ropeCoeff     cos/sin of pair k at relative distance p, from the same two-level table
//                 as the CPU RopeTable (rows built in double; p >= 2^22 directly in double)
//   rotatedElem   element d of R(sign * p) x, with the CPU's pairings and operation order
//   branchOf      the Λ branch of (i, j) for a slot position j (-1 = empty) — classify()
//   classifySlot  one key slot against a query tile, as the prefill kernels mark it
//   tileMasked    whether a key tile can hold no softmax (local/global) pair for a query tile
//   rescale/weight/finishValue   the online-softmax steps and the final O / l
//   betterTop/topInsert          the top-k total order and the k-best insertion of the CPU
#pragma once
#include <cmath>
#include <cstdint>
#include <limits>

#include "lmi/lambda_rule.h"

#if defined(__CUDACC__)
#define LMI_HD __host__ __device__ __forceinline__
#else
#define LMI_HD inline
#endif

namespace lmi::attn::cuda::detail {

// Same split as detail::RopeTable: distances below kRopeLo read one row; below
// kRopeLo * kRopeHi combine a high row (p / kRopeLo) and a low row (p % kRopeLo).
constexpr int64_t kRopeLo = 4096;
constexpr int64_t kRopeHi = 1024;

// Device (or host, in tests) copies of the table rows. Row layout: C[half] then S[half].
struct RopeView {
  const float* lo = nullptr;       // [kRopeLo][rd]: distance p
  const float* hi = nullptr;       // [kRopeHi][rd]: distance p * kRopeLo
  const double* invFreq = nullptr; // [half]: freqScale * thetaBase^(-2k/rd)
  int rd = 0, half = 0;
};

// a * b rounded once, never fused into an FMA (the CPU path multiplies and adds separately).
LMI_HD float mulRn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}

LMI_HD float expF(float x) {
#if defined(__CUDA_ARCH__)
  return ::expf(x);
#else
  return std::exp(x);
#endif
}

LMI_HD void sinCosD(double a, float* c, float* s) {
#if defined(__CUDA_ARCH__)
  *c = static_cast<float>(::cos(a));
  *s = static_cast<float>(::sin(a));
#else
  *c = static_cast<float>(std::cos(a));
  *s = static_cast<float>(std::sin(a));
#endif
}

LMI_HD float addRn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}

// cos and sin of pair k's angle at distance p >= 0.
LMI_HD void ropeCoeff(const RopeView& t, int64_t p, int k, float* c, float* s) {
  if (p < kRopeLo) {
    const float* r = t.lo + p * t.rd;
    *c = r[k];
    *s = r[t.half + k];
    return;
  }
  if (p < kRopeLo * kRopeHi) {
    const float* a = t.hi + (p / kRopeLo) * t.rd;
    const float* b = t.lo + (p % kRopeLo) * t.rd;
    const float ca = a[k], sa = a[t.half + k], cb = b[k], sb = b[t.half + k];
    // R(a + b) = R(a) R(b), in float as the CPU does
    *c = addRn(mulRn(ca, cb), -mulRn(sa, sb));
    *s = addRn(mulRn(sa, cb), mulRn(ca, sb));
    return;
  }
  const double a = static_cast<double>(p) * t.invFreq[k];
  sinCosD(a, c, s);
}

// The pair of dimension d < rd: its index k and the two dimensions (a, b) it rotates.
LMI_HD void pairOf(int d, int half, bool neox, int* k, int* a, int* b) {
  if (neox) {
    *k = d < half ? d : d - half;
    *a = *k;
    *b = *k + half;
  } else {
    *k = d >> 1;
    *a = 2 * *k;
    *b = *a + 1;
  }
}

// Element d of y = R(sign * p) x where (c, s) are pair k(d)'s coefficients at distance p:
//   y[a] = x[a] c - x[b] s',  y[b] = x[b] c + x[a] s',  s' = sign * s   (d < rd)
//   y[d] = x[d]                                                         (d >= rd)
// xa, xb are x[a], x[b] of d's pair (ignored for d >= rd, pass x[d] as xa).
LMI_HD float rotatedElem(int d, int a, float xa, float xb, float c, float s, float sign) {
  const float sp = sign * s;
  if (d == a) return addRn(mulRn(xa, c), -mulRn(xb, sp));
  return addRn(mulRn(xb, c), mulRn(xa, sp));
}

enum : int { kMasked = 0, kLocal = 1, kGlobal = 2, kMiddle = 3 };

// The branch of query position i against a slot at position j (j == -1: empty slot).
LMI_HD int branchOf(int64_t i, int64_t j, const LambdaMask& m) {
  if (j < 0) return kMasked;
  return static_cast<int>(classify(i, j, m));
}

// One key slot (position j) against a query tile (qpos[0..nq), -1 = padding), as both prefill
// kernels classify it: column entries cls[qq * stride] get kLocal, kGlobal or kMasked (middle keys
// count as masked: the top-k kernel handles them); returns bit 1 if any pair is local, bit 2 if
// any is global.
LMI_HD int classifySlot(const int64_t* qpos, int nq, int64_t j, const LambdaMask& m, uint8_t* cls, int stride) {
  int flags = 0;
  for (int qq = 0; qq < nq; qq++) {
    int br = qpos[qq] < 0 ? kMasked : branchOf(qpos[qq], j, m);
    if (br == kMiddle) br = kMasked;
    cls[qq * stride] = static_cast<uint8_t>(br);
    flags |= br == kLocal ? 1 : br == kGlobal ? 2 : 0;
  }
  return flags;
}

// True when no (query i in [qmin, qmax], key j in [jmin, jmax]) pair is Local or Global,
// i.e. the whole tile is masked for the softmax (middle keys go through the top-k path).
// An empty tile has jmin = INT64_MAX, jmax = -1.
LMI_HD bool tileMasked(int64_t qmin, int64_t qmax, int64_t jmin, int64_t jmax, const LambdaMask& m) {
  if (jmin > qmax) return true;  // every key in the future (or no key at all)
  if (!m.lambda) return false;
  // i - j >= qmin - jmax >= nLocal: never local; j - origin >= jmin - origin >= nGlobal: never global
  return qmin - jmax >= m.nLocal && jmin - m.origin >= m.nGlobal;
}

// Online softmax: the factor for the old state when the running max goes mOld -> mNew
// (mNew >= mOld), and the weight of logit s under max m. -inf means "nothing yet".
LMI_HD float rescale(float mOld, float mNew) {
  return mOld == -std::numeric_limits<float>::infinity() ? 0.0f : expF(mOld - mNew);
}
LMI_HD float weight(float s, float m) {
  return s == -std::numeric_limits<float>::infinity() ? 0.0f : expF(s - m);
}
// The output element from the merged state (max m, sum l, unnormalized acc): zeros when
// nothing was kept, otherwise acc * (1 / l) as the CPU does.
LMI_HD float finishValue(float acc, float m, float l) {
  if (m == -std::numeric_limits<float>::infinity()) return 0.0f;
  return acc * (1.0f / l);
}

// Top-k middle candidates: larger logit first, then the earlier key by (position, slot) —
// the CPU's order on keys sorted by (position, slot).
struct TopCand {
  float v;
  int64_t pos;
  int64_t slot;
};
LMI_HD bool betterTop(const TopCand& a, const TopCand& b) {
  return a.v > b.v || (a.v == b.v && (a.pos < b.pos || (a.pos == b.pos && a.slot < b.slot)));
}
// Inserts e into the sorted list t[0, cnt) that keeps the k best; returns the new count.
// NaN never enters.
LMI_HD int topInsert(TopCand* t, int cnt, int k, const TopCand& e) {
  if (!(e.v == e.v) || k <= 0) return cnt;
  if (cnt == k) {
    if (!betterTop(e, t[k - 1])) return cnt;
    cnt--;
  }
  int pos = cnt;
  while (pos > 0 && betterTop(e, t[pos - 1])) {
    t[pos] = t[pos - 1];
    pos--;
  }
  t[pos] = e;
  return cnt + 1;
}

// The ALiBi bias -slope * distance, computed in double and rounded once (as the CPU).
LMI_HD float alibiBias(float slope, int64_t dist) {
  return static_cast<float>(-static_cast<double>(slope) * static_cast<double>(dist));
}

}  // namespace lmi::attn::cuda::detail
