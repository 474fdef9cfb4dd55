// AVX-512 implementation of the decode tiles (KernelOps::localLogits, accumulateValues) and of the
// softmax step every tile takes (softmaxTile); every other primitive is the AVX2 one. Compiled
// with per-function target attributes, selected at runtime by cpuHasAvx512().
//
// The key side is the AVX2 decode tiles' fusion (a key goes from the cache through conversion and
// rotation to its dot products in registers), sixteen lanes wide: a group's sixteen (row, key)
// products are reduced to logits together by one shuffle tree. The value side keeps up to four
// rows by 64 dims of output in registers across a tile's keys.
#include "kernels.h"
#include "exp_poly.h"

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <limits>

// GCC 12's _mm512_cvtph_ps passes _mm512_undefined_ps() as the (fully overwritten) merge source,
// which -Wmaybe-uninitialized reports at every use.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#define LMI_AVX512 __attribute__((target("avx512f,avx512vl,avx512dq,avx2,fma,f16c")))

namespace lmi::attn::detail {
namespace {

constexpr int kMaxVec = 16;  // D <= 256: sixteen 16-lane vectors per row

// Shapes whose rows or rotated spans are not whole 16-lane vectors take the AVX2 primitives, 8
// lanes wide: head dims that are an odd multiple of 8 (e.g. 8: stories260K), Normal rotary widths
// that are an odd multiple of 8, NeoX ones that are an odd multiple of 16 (e.g. 16: Pythia-160M,
// StableLM-2), whose halves would split a vector.
const KernelOps* gAvx2 = nullptr;

// v[i] = elements [16 i, 16 i + 16) of the row, as floats (NV: see localLogitsRows).
template <int NV>
LMI_AVX512 inline void loadRow(const void* row, KVType type, int nv, __m512* v) {
  const int n = NV ? NV : nv;
  if (type == KVType::F16) {
    const uint16_t* s = static_cast<const uint16_t*>(row);
#pragma GCC unroll 8
    for (int i = 0; i < n; i++)
      v[i] = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + 16 * i)));
  } else {
    const float* s = static_cast<const float*>(row);
#pragma GCC unroll 8
    for (int i = 0; i < n; i++) v[i] = _mm512_loadu_ps(s + 16 * i);
  }
}

// R(-p) on sixteen dims of Normal pairs from their lane coefficients (RopeTable::laneCoeffs):
// x C + (x, pairs swapped) S, the roundings of the AVX2 rotate().
LMI_AVX512 inline __m512 turnNormal(__m512 x, const float* C16, const float* S16) {
  const __m512 swapped = _mm512_permute_ps(x, 0xB1);
  return _mm512_fmadd_ps(x, _mm512_loadu_ps(C16), _mm512_mul_ps(swapped, _mm512_loadu_ps(S16)));
}

// NeoX pairs (a, b) = (dims k, k + rd/2), sixteen pairs per call: rotate()'s ya = a c - b s and
// yb = b c + a s with s = -S, the negation folded into the FMAs.
LMI_AVX512 inline void turnNeoX(__m512& a, __m512& b, const float* C16, const float* S16) {
  const __m512 c = _mm512_loadu_ps(C16);
  const __m512 s = _mm512_loadu_ps(S16);
  const __m512 ya = _mm512_fmadd_ps(b, s, _mm512_mul_ps(a, c));
  b = _mm512_fnmadd_ps(a, s, _mm512_mul_ps(b, c));
  a = ya;
}

// v = R(-p) v on its first rd dims (rd % 16 == 0 for Normal pairs, rd % 32 == 0 for NeoX ones),
// as rotate(..., sign = -1) would. With NV
// known, every index is a constant (the vectors stay in registers) except for partial NeoX.
template <int NV>
LMI_AVX512 inline void turnBack(__m512* v, int nv, int rd, RopePairing pairing, const float* C, const float* S) {
  const int n = NV ? NV : nv;
  if (pairing == RopePairing::Normal) {
    const int turned = rd / 16;
#pragma GCC unroll 8
    for (int i = 0; i < n; i++)
      if (i < turned) v[i] = turnNormal(v[i], C + 16 * i, S + 16 * i);
    return;
  }
  const int h = rd / 32;  // vectors in each half
  if (NV != 0 && 2 * h == n) {
#pragma GCC unroll 4
    for (int i = 0; i < n / 2; i++) turnNeoX(v[i], v[i + n / 2], C + 16 * i, S + 16 * i);
    return;
  }
  for (int i = 0; i < h; i++) turnNeoX(v[i], v[i + h], C + 16 * i, S + 16 * i);
}

// Sixteen horizontal sums at once: lane 4 b + l of the result is the sum of the 16 lanes of
// x[4 l + b]. A tree of lane shuffles and adds, 45 operations for all sixteen.
LMI_AVX512 inline __m512 sum16(const __m512* x) {
  __m512 t[8];  // 128-bit block pairs folded: [x_2i (0+2), x_2i (1+3), x_2i+1 (0+2), x_2i+1 (1+3)]
#pragma GCC unroll 8
  for (int i = 0; i < 8; i++)
    t[i] = _mm512_add_ps(_mm512_shuffle_f32x4(x[2 * i], x[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm512_shuffle_f32x4(x[2 * i], x[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  __m512 u[4];  // block b of u[k]: four partial sums of x_4k+b
#pragma GCC unroll 4
  for (int k = 0; k < 4; k++)
    u[k] = _mm512_add_ps(_mm512_shuffle_f32x4(t[2 * k], t[2 * k + 1], _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_f32x4(t[2 * k], t[2 * k + 1], _MM_SHUFFLE(3, 1, 3, 1)));
  const __m512 w0 = _mm512_add_ps(_mm512_shuffle_ps(u[0], u[1], _MM_SHUFFLE(1, 0, 1, 0)),
                                  _mm512_shuffle_ps(u[0], u[1], _MM_SHUFFLE(3, 2, 3, 2)));
  const __m512 w1 = _mm512_add_ps(_mm512_shuffle_ps(u[2], u[3], _MM_SHUFFLE(1, 0, 1, 0)),
                                  _mm512_shuffle_ps(u[2], u[3], _MM_SHUFFLE(3, 2, 3, 2)));
  return _mm512_add_ps(_mm512_shuffle_ps(w0, w1, _MM_SHUFFLE(2, 0, 2, 0)),
                       _mm512_shuffle_ps(w0, w1, _MM_SHUFFLE(3, 1, 3, 1)));
}

// 128-bit block b of z (b constant after inlining).
LMI_AVX512 inline __m128 block(__m512 z, int b) {
  switch (b) {
    case 0: return _mm512_castps512_ps128(z);
    case 1: return _mm512_extractf32x4_ps(z, 1);
    case 2: return _mm512_extractf32x4_ps(z, 2);
    default: return _mm512_extractf32x4_ps(z, 3);
  }
}

// NV: D / 16 when known at compile time (the key vectors then stay in registers), 0 for any other
// D. A group is 16 (row, key) products, one per sum16 input: 16 / RP keys of RP rows (RP = R,
// except that three rows take a fourth, empty one). Key j of row r goes to input
// 4 (j % 4) + r + RP (j / 4), so block r + RP (j / 4) of the sums holds row r's keys j..j+3 in order.
template <int R, int NV>
LMI_AVX512 void localLogitsRows(int n, const void* const* keys, KVType type, int D, int rd, RopePairing pairing,
                                const float* const* C, const float* const* S, const float* Q, int ldq, float* out,
                                int ldo) {
  constexpr int RP = R == 3 ? 4 : R;
  constexpr int KG = 16 / RP;  // keys per group
  const int nv = NV ? NV : D / 16;
  for (int c0 = 0; c0 < n; c0 += KG) {
    const int m = n - c0 < KG ? n - c0 : KG;
    __m512 x[16];
    if constexpr (RP != R) {
      for (int j = 0; j < KG; j++) x[4 * j + 3] = _mm512_setzero_ps();
    }
#pragma GCC unroll 16
    for (int j = 0; j < KG; j++) {
      // A short last group repeats its first key, whose extra sums are not stored.
      const int key = c0 + (j < m ? j : 0);
      __m512 k[NV ? NV : kMaxVec];
      loadRow<NV>(keys[key], type, nv, k);
      if (C != nullptr) turnBack<NV>(k, nv, rd, pairing, C[key], S[key]);
#pragma GCC unroll 4
      for (int r = 0; r < R; r++) {
        const float* q = Q + static_cast<int64_t>(r) * ldq;
        __m512 p = _mm512_mul_ps(_mm512_loadu_ps(q), k[0]);
#pragma GCC unroll 8
        for (int i = 1; i < nv; i++) p = _mm512_fmadd_ps(_mm512_loadu_ps(q + 16 * i), k[i], p);
        x[4 * (j % 4) + r + RP * (j / 4)] = p;
      }
    }
    const __m512 z = sum16(x);
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
      float* o = out + static_cast<int64_t>(r) * ldo + c0;
#pragma GCC unroll 4
      for (int g = 0; g < KG / 4; g++) {
        const int left = m - 4 * g;
        if (left >= 4) _mm_storeu_ps(o + 4 * g, block(z, r + RP * g));
        else if (left > 0) _mm_mask_storeu_ps(o + 4 * g, static_cast<__mmask8>((1u << left) - 1), block(z, r + RP * g));
      }
    }
  }
}

// exp(x) for x <= 0 (-inf included): the AVX2 expNonPositive, sixteen lanes wide.
LMI_AVX512 inline __m512 expNonPositive(__m512 x) {
  namespace ep = exp_poly;
  const __m512 lowest = _mm512_set1_ps(ep::kLowest);
  const __mmask16 underflow = _mm512_cmp_ps_mask(x, lowest, _CMP_LT_OQ);  // also true for -inf
  x = _mm512_max_ps(x, lowest);
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(ep::kLog2e)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(ep::kLn2Hi), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(ep::kLn2Lo), r);
  __m512 p = _mm512_set1_ps(ep::kTaylor[0]);
#pragma GCC unroll 8
  for (int i = 1; i < 8; i++) p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(ep::kTaylor[i]));
  const __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
  return _mm512_maskz_mov_ps(static_cast<__mmask16>(~underflow), _mm512_mul_ps(p, _mm512_castsi512_ps(e)));
}

// Lanes [c, c + 16) of a row of n (n % 8 == 0): all sixteen, or the last eight.
LMI_AVX512 inline __mmask16 laneMask(int c, int n) { return c + 16 <= n ? 0xFFFF : 0x00FF; }

// KernelOps::softmaxTile, sixteen lanes wide: per element the same operations as the AVX2 one; the
// row sums are added in a different order.
LMI_AVX512 void softmaxTile(float* S, int ldS, int R, int N, float* m, float* l, float* O, int ldO, int Dp) {
  const float ninf = -std::numeric_limits<float>::infinity();
  const __m512 vninf = _mm512_set1_ps(ninf);
  for (int r = 0; r < R; r++) {
    float* s = S + static_cast<int64_t>(r) * ldS;
    __m512 vmax = vninf;
    for (int c = 0; c < N; c += 16) vmax = _mm512_max_ps(vmax, _mm512_mask_loadu_ps(vninf, laneMask(c, N), s + c));
    const float tmax = _mm512_reduce_max_ps(vmax);
    if (tmax == ninf) {
      for (int c = 0; c < N; c += 16) _mm512_mask_storeu_ps(s + c, laneMask(c, N), _mm512_setzero_ps());
      continue;
    }
    if (tmax > m[r]) {
      const float alpha = m[r] == ninf ? 0.0f : std::exp(m[r] - tmax);
      const __m512 va = _mm512_set1_ps(alpha);
      float* o = O + static_cast<int64_t>(r) * ldO;
      for (int d = 0; d < Dp; d += 16) {
        const __mmask16 k = laneMask(d, Dp);
        _mm512_mask_storeu_ps(o + d, k, _mm512_mul_ps(va, _mm512_maskz_loadu_ps(k, o + d)));
      }
      l[r] *= alpha;
      m[r] = tmax;
    }
    const __m512 vm = _mm512_set1_ps(m[r]);
    __m512 sum = _mm512_setzero_ps();
    for (int c = 0; c < N; c += 16) {
      const __mmask16 k = laneMask(c, N);
      const __m512 e = expNonPositive(_mm512_sub_ps(_mm512_mask_loadu_ps(vninf, k, s + c), vm));
      _mm512_mask_storeu_ps(s + c, k, e);
      sum = _mm512_add_ps(sum, e);
    }
    l[r] += _mm512_reduce_add_ps(sum);
  }
}

// O[r][d0, d0 + 16 W) += sum over c < n of P[r][c] V_c for r < R: the R x W accumulators stay in
// registers across the keys (enough independent FMA chains to keep both 512-bit ports busy), and
// each element takes one FMA per term in c order, as the AVX2 version does.
template <int R, int W, bool F16>
LMI_AVX512 void accumulateSpan(int n, const void* const* values, int d0, const float* P, int ldp, float* O,
                               int ldo) {
  __m512 acc[R][W];
#pragma GCC unroll 4
  for (int r = 0; r < R; r++)
#pragma GCC unroll 4
    for (int w = 0; w < W; w++) acc[r][w] = _mm512_loadu_ps(O + static_cast<int64_t>(r) * ldo + d0 + 16 * w);
  for (int c = 0; c < n; c++) {
    __m512 v[W];
    if constexpr (F16) {
      const uint16_t* s = static_cast<const uint16_t*>(values[c]) + d0;
#pragma GCC unroll 4
      for (int w = 0; w < W; w++)
        v[w] = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + 16 * w)));
    } else {
      const float* s = static_cast<const float*>(values[c]) + d0;
#pragma GCC unroll 4
      for (int w = 0; w < W; w++) v[w] = _mm512_loadu_ps(s + 16 * w);
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
      const __m512 p = _mm512_set1_ps(P[static_cast<int64_t>(r) * ldp + c]);
#pragma GCC unroll 4
      for (int w = 0; w < W; w++) acc[r][w] = _mm512_fmadd_ps(p, v[w], acc[r][w]);
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < R; r++)
#pragma GCC unroll 4
    for (int w = 0; w < W; w++) _mm512_storeu_ps(O + static_cast<int64_t>(r) * ldo + d0 + 16 * w, acc[r][w]);
}

template <int R, bool F16>
LMI_AVX512 void accumulateRows(int n, const void* const* values, int D, const float* P, int ldp, float* O, int ldo) {
  for (int d0 = 0; d0 < D; d0 += 64) {
    switch ((D - d0) / 16) {
      case 1: accumulateSpan<R, 1, F16>(n, values, d0, P, ldp, O, ldo); break;
      case 2: accumulateSpan<R, 2, F16>(n, values, d0, P, ldp, O, ldo); break;
      case 3: accumulateSpan<R, 3, F16>(n, values, d0, P, ldp, O, ldo); break;
      default: accumulateSpan<R, 4, F16>(n, values, d0, P, ldp, O, ldo); break;
    }
  }
}

template <bool F16>
LMI_AVX512 void accumulateType(int R, int n, const void* const* values, int D, const float* P, int ldp, float* O,
                               int ldo) {
  switch (R) {
    case 1: accumulateRows<1, F16>(n, values, D, P, ldp, O, ldo); break;
    case 2: accumulateRows<2, F16>(n, values, D, P, ldp, O, ldo); break;
    case 3: accumulateRows<3, F16>(n, values, D, P, ldp, O, ldo); break;
    default: accumulateRows<4, F16>(n, values, D, P, ldp, O, ldo); break;
  }
}

LMI_AVX512 void accumulateValues(int R, int n, const void* const* values, KVType type, int D, const float* P, int ldp,
                                 float* O, int ldo) {
  if (D % 16 != 0) return gAvx2->accumulateValues(R, n, values, type, D, P, ldp, O, ldo);
  if (type == KVType::F16) accumulateType<true>(R, n, values, D, P, ldp, O, ldo);
  else accumulateType<false>(R, n, values, D, P, ldp, O, ldo);
}

template <int NV>
LMI_AVX512 void localLogitsWidth(int R, int n, const void* const* keys, KVType type, int D, int rd,
                                 RopePairing pairing, const float* const* C, const float* const* S, const float* Q,
                                 int ldq, float* out, int ldo) {
  switch (R) {
    case 1: localLogitsRows<1, NV>(n, keys, type, D, rd, pairing, C, S, Q, ldq, out, ldo); break;
    case 2: localLogitsRows<2, NV>(n, keys, type, D, rd, pairing, C, S, Q, ldq, out, ldo); break;
    case 3: localLogitsRows<3, NV>(n, keys, type, D, rd, pairing, C, S, Q, ldq, out, ldo); break;
    default: localLogitsRows<4, NV>(n, keys, type, D, rd, pairing, C, S, Q, ldq, out, ldo); break;
  }
}

LMI_AVX512 void localLogits(int R, int n, const void* const* keys, KVType type, int D, int rd, RopePairing pairing,
                            const float* const* C, const float* const* S, const float* Q, int ldq, float* out,
                            int ldo) {
  if (D % 16 != 0 || (C != nullptr && rd % (pairing == RopePairing::NeoX ? 32 : 16) != 0))
    return gAvx2->localLogits(R, n, keys, type, D, rd, pairing, C, S, Q, ldq, out, ldo);
  switch (D) {
    case 64: localLogitsWidth<4>(R, n, keys, type, D, rd, pairing, C, S, Q, ldq, out, ldo); break;
    case 128: localLogitsWidth<8>(R, n, keys, type, D, rd, pairing, C, S, Q, ldq, out, ldo); break;
    default: localLogitsWidth<0>(R, n, keys, type, D, rd, pairing, C, S, Q, ldq, out, ldo); break;
  }
}

}  // namespace

const KernelOps* avx512Ops() {
  const KernelOps* base = avx2Ops();
  if (base == nullptr) return nullptr;
  static const KernelOps ops = [base] {
    gAvx2 = base;
    KernelOps o = *base;
    o.localLogits = localLogits;
    o.accumulateValues = accumulateValues;
    o.softmaxTile = softmaxTile;
    return o;
  }();
  return &ops;
}

}  // namespace lmi::attn::detail

#else  // not x86, or a compiler without GCC-style target attributes

namespace lmi::attn::detail {
const KernelOps* avx512Ops() { return nullptr; }
}  // namespace lmi::attn::detail

#endif
