// AVX2 + FMA + F16C implementation of the tile primitives. Compiled with per-function
// target attributes (no global -mavx2), selected at runtime by cpuHasAvx2Fma().
#include "kernels.h"

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#include <immintrin.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "exp_poly.h"
#include "half.h"

#define LMI_AVX2 __attribute__((target("avx2,fma,f16c")))

namespace lmi::attn::detail {
namespace {

// C block of RB rows x NB*8 columns, summed over k in order with one FMA per term.
template <int RB, int NB>
LMI_AVX2 inline void microKernel(int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc,
                                 bool accumulate) {
  // Fully unrolled so that the accumulators live in registers.
  __m256 acc[RB][NB];
#pragma GCC unroll 8
  for (int r = 0; r < RB; r++)
#pragma GCC unroll 4
    for (int v = 0; v < NB; v++)
      acc[r][v] = accumulate ? _mm256_loadu_ps(C + static_cast<int64_t>(r) * ldc + 8 * v) : _mm256_setzero_ps();
  for (int k = 0; k < K; k++) {
    __m256 b[NB];
    const float* brow = B + static_cast<int64_t>(k) * ldb;
#pragma GCC unroll 4
    for (int v = 0; v < NB; v++) b[v] = _mm256_loadu_ps(brow + 8 * v);
#pragma GCC unroll 8
    for (int r = 0; r < RB; r++) {
      const __m256 a = _mm256_broadcast_ss(A + static_cast<int64_t>(r) * lda + k);
#pragma GCC unroll 4
      for (int v = 0; v < NB; v++) acc[r][v] = _mm256_fmadd_ps(a, b[v], acc[r][v]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < RB; r++)
#pragma GCC unroll 4
    for (int v = 0; v < NB; v++) _mm256_storeu_ps(C + static_cast<int64_t>(r) * ldc + 8 * v, acc[r][v]);
}

template <int NB>
LMI_AVX2 inline void gemmColumns(int M, int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc,
                                 bool accumulate) {
  int r = 0;
  for (; r + 6 <= M; r += 6)
    microKernel<6, NB>(K, A + static_cast<int64_t>(r) * lda, lda, B, ldb, C + static_cast<int64_t>(r) * ldc, ldc,
                       accumulate);
  const float* a = A + static_cast<int64_t>(r) * lda;
  float* c = C + static_cast<int64_t>(r) * ldc;
  switch (M - r) {
    case 5: microKernel<5, NB>(K, a, lda, B, ldb, c, ldc, accumulate); break;
    case 4: microKernel<4, NB>(K, a, lda, B, ldb, c, ldc, accumulate); break;
    case 3: microKernel<3, NB>(K, a, lda, B, ldb, c, ldc, accumulate); break;
    case 2: microKernel<2, NB>(K, a, lda, B, ldb, c, ldc, accumulate); break;
    case 1: microKernel<1, NB>(K, a, lda, B, ldb, c, ldc, accumulate); break;
    default: break;
  }
}

LMI_AVX2 void gemm(int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc,
                   bool accumulate) {
  int n = 0;
  for (; n + 16 <= N; n += 16) gemmColumns<2>(M, K, A, lda, B + n, ldb, C + n, ldc, accumulate);
  for (; n + 8 <= N; n += 8) gemmColumns<1>(M, K, A, lda, B + n, ldb, C + n, ldc, accumulate);
}

// RB rows x 4 keys: 8-lane partial sums over k, then one fixed horizontal reduction.
template <int RB>
LMI_AVX2 inline void dotBlock(int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc) {
  __m256 acc[RB][4];
#pragma GCC unroll 4
  for (int r = 0; r < RB; r++)
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) acc[r][j] = _mm256_setzero_ps();
  for (int k = 0; k < K; k += 8) {
    __m256 b[4];
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) b[j] = _mm256_loadu_ps(B + static_cast<int64_t>(j) * ldb + k);
#pragma GCC unroll 4
    for (int r = 0; r < RB; r++) {
      const __m256 a = _mm256_loadu_ps(A + static_cast<int64_t>(r) * lda + k);
#pragma GCC unroll 4
      for (int j = 0; j < 4; j++) acc[r][j] = _mm256_fmadd_ps(a, b[j], acc[r][j]);
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < RB; r++) {
    const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(acc[r][0], acc[r][1]), _mm256_hadd_ps(acc[r][2], acc[r][3]));
    _mm_storeu_ps(C + static_cast<int64_t>(r) * ldc,
                  _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
  }
}

LMI_AVX2 void gemmNT(int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc) {
  for (int n = 0; n < N; n += 4) {
    const float* b = B + static_cast<int64_t>(n) * ldb;
    int r = 0;
    for (; r + 2 <= M; r += 2)
      dotBlock<2>(K, A + static_cast<int64_t>(r) * lda, lda, b, ldb, C + static_cast<int64_t>(r) * ldc + n, ldc);
    if (r < M) dotBlock<1>(K, A + static_cast<int64_t>(r) * lda, lda, b, ldb, C + static_cast<int64_t>(r) * ldc + n, ldc);
  }
}

// Eight elements [i, i + 8) of an f32, f16 or Q8_0 row as floats (i % 8 == 0). Q8_0: d * q, exact
// in f32 (an 11-bit scale times an 8-bit integer), so what follows is the f32 row's arithmetic.
template <KVType T>
LMI_AVX2 inline __m256 load8(const void* row, int i) {
  if constexpr (T == KVType::Q8_0) {
    const uint8_t* b = static_cast<const uint8_t*>(row) + (i / kQ8Block) * kQ8BlockBytes;
    uint16_t bits;
    std::memcpy(&bits, b, 2);
    const __m128i q = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(b + 2 + i % kQ8Block));
    return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)), _mm256_set1_ps(_cvtsh_ss(bits)));
  } else if constexpr (T == KVType::F16) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(row) + i)));
  } else {
    return _mm256_loadu_ps(static_cast<const float*>(row) + i);
  }
}

constexpr int kPrefetchRows = 8;

LMI_AVX2 void loadRows(const void* base, KVType type, int64_t slotStride, int64_t headOff, const int64_t* slots,
                       int n, int D, int Dp, float* dst) {
  const int64_t rowBytes = kvBytes(type, D);
  for (int r = 0; r < n; r++) {
    float* d = dst + static_cast<int64_t>(r) * Dp;
    const int64_t off = slots[r] * slotStride + headOff;
    if (r + kPrefetchRows < n) {
      // Rows are gathered by slot, a stride apart: start fetching a few rows ahead.
      const char* next =
          static_cast<const char*>(base) + kvBytes(type, slots[r + kPrefetchRows] * slotStride + headOff);
      for (int64_t b = 0; b < rowBytes; b += 64) _mm_prefetch(next + b, _MM_HINT_T0);
    }
    int i = 0;
    if (type == KVType::Q8_0) {
      const void* row = static_cast<const uint8_t*>(base) + kvBytes(type, off);
      for (; i < D; i += 8) _mm256_storeu_ps(d + i, load8<KVType::Q8_0>(row, i));
    } else if (type == KVType::F32) {
      const float* s = static_cast<const float*>(base) + off;
      for (; i + 8 <= D; i += 8) _mm256_storeu_ps(d + i, _mm256_loadu_ps(s + i));
      for (; i < D; i++) d[i] = s[i];
    } else {
      const uint16_t* s = static_cast<const uint16_t*>(base) + off;
      for (; i + 8 <= D; i += 8)
        _mm256_storeu_ps(d + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i))));
      for (; i < D; i++) d[i] = halfToFloat(s[i]);
    }
    for (; i < Dp; i++) d[i] = 0.0f;
  }
}

LMI_AVX2 void rotate(const float* x, float* y, int rd, int Dp, RopePairing pairing, const float* C, const float* S,
                     float sign) {
  const int half = rd / 2;
  const __m256 sg = _mm256_set1_ps(sign);
  int k = 0;  // pairs done
  if (pairing == RopePairing::NeoX) {
    for (; k + 8 <= half; k += 8) {
      const __m256 a = _mm256_loadu_ps(x + k);
      const __m256 b = _mm256_loadu_ps(x + k + half);
      const __m256 c = _mm256_loadu_ps(C + k);
      const __m256 s = _mm256_mul_ps(sg, _mm256_loadu_ps(S + k));
      _mm256_storeu_ps(y + k, _mm256_fnmadd_ps(b, s, _mm256_mul_ps(a, c)));
      _mm256_storeu_ps(y + k + half, _mm256_fmadd_ps(a, s, _mm256_mul_ps(b, c)));
    }
    for (; k < half; k++) {
      const float c = C[k], s = sign * S[k];
      const float a = x[k], b = x[k + half];
      y[k] = a * c - b * s;
      y[k + half] = b * c + a * s;
    }
  } else {
    // 8 pairs = 16 dims: split into the pairs' first (a) and second (b) elements, in the lane order
    // [0 1 4 5 | 2 3 6 7] that shuffle_ps gives, with C and S permuted to match; unpacking a and b
    // then restores the interleaved order with no cross-lane step.
    for (; k + 8 <= half; k += 8) {
      const __m256 v0 = _mm256_loadu_ps(x + 2 * k);
      const __m256 v1 = _mm256_loadu_ps(x + 2 * k + 8);
      const __m256 a = _mm256_shuffle_ps(v0, v1, 0x88);
      const __m256 b = _mm256_shuffle_ps(v0, v1, 0xDD);
      const __m256 c = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_loadu_ps(C + k)), 0xD8));
      const __m256 s = _mm256_mul_ps(
          sg, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_loadu_ps(S + k)), 0xD8)));
      const __m256 ya = _mm256_fmsub_ps(a, c, _mm256_mul_ps(b, s));  // a c - b s
      const __m256 yb = _mm256_fmadd_ps(b, c, _mm256_mul_ps(a, s));  // b c + a s
      _mm256_storeu_ps(y + 2 * k, _mm256_unpacklo_ps(ya, yb));
      _mm256_storeu_ps(y + 2 * k + 8, _mm256_unpackhi_ps(ya, yb));
    }
    for (; k + 4 <= half; k += 4) {  // 4 pairs = 8 dims
      const __m128 c4 = _mm_loadu_ps(C + k);
      const __m128 s4 = _mm_loadu_ps(S + k);
      const __m256 c = _mm256_set_m128(_mm_unpackhi_ps(c4, c4), _mm_unpacklo_ps(c4, c4));
      const __m256 s = _mm256_mul_ps(sg, _mm256_set_m128(_mm_unpackhi_ps(s4, s4), _mm_unpacklo_ps(s4, s4)));
      const __m256 v = _mm256_loadu_ps(x + 2 * k);
      const __m256 partner = _mm256_permute_ps(v, 0xB1);  // swap within each pair
      // even lanes: x c - partner s; odd lanes: x c + partner s
      _mm256_storeu_ps(y + 2 * k, _mm256_addsub_ps(_mm256_mul_ps(v, c), _mm256_mul_ps(partner, s)));
    }
    for (; k < half; k++) {
      const float c = C[k], s = sign * S[k];
      const float a = x[2 * k], b = x[2 * k + 1];
      y[2 * k] = a * c - b * s;
      y[2 * k + 1] = b * c + a * s;
    }
  }
  for (int i = rd; i < Dp; i++) y[i] = x[i];
}

// r[c][i] = old r[i][c]: an 8 x 8 block transposed in registers.
LMI_AVX2 inline void transpose8(__m256* r) {
  __m256 t[8], u[8];
#pragma GCC unroll 4
  for (int i = 0; i < 4; i++) {
    t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
#pragma GCC unroll 2
  for (int i = 0; i < 2; i++) {
    u[4 * i + 0] = _mm256_shuffle_ps(t[4 * i + 0], t[4 * i + 2], 0x44);
    u[4 * i + 1] = _mm256_shuffle_ps(t[4 * i + 0], t[4 * i + 2], 0xEE);
    u[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
    u[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
  }
#pragma GCC unroll 4
  for (int i = 0; i < 4; i++) {
    r[i] = _mm256_permute2f128_ps(u[i], u[4 + i], 0x20);
    r[i + 4] = _mm256_permute2f128_ps(u[i], u[4 + i], 0x31);
  }
}

LMI_AVX2 void transpose(const float* src, int lds, int rows, int cols, float* dst, int ldd) {
  for (int r0 = 0; r0 < rows; r0 += 8) {
    for (int c0 = 0; c0 < cols; c0 += 8) {
      const float* s = src + static_cast<int64_t>(r0) * lds + c0;
      __m256 r[8];
      for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(s + static_cast<int64_t>(i) * lds);
      transpose8(r);
      float* d = dst + static_cast<int64_t>(c0) * ldd + r0;
      for (int i = 0; i < 8; i++) _mm256_storeu_ps(d + static_cast<int64_t>(i) * ldd, r[i]);
    }
  }
}

// exp(x) for x <= 0 (the only inputs softmax gives it): Cody-Waite reduction to
// |r| <= ln2/2, then the degree-7 Taylor polynomial (relative error ~1e-7).
LMI_AVX2 inline __m256 expNonPositive(__m256 x) {
  namespace ep = exp_poly;
  const __m256 lowest = _mm256_set1_ps(ep::kLowest);
  const __m256 underflow = _mm256_cmp_ps(x, lowest, _CMP_LT_OQ);  // also true for -inf
  x = _mm256_max_ps(x, lowest);
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(ep::kLog2e)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(ep::kLn2Hi), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(ep::kLn2Lo), r);
  __m256 p = _mm256_set1_ps(ep::kTaylor[0]);
#pragma GCC unroll 8
  for (int i = 1; i < 8; i++) p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(ep::kTaylor[i]));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  const __m256 res = _mm256_mul_ps(p, _mm256_castsi256_ps(e));
  return _mm256_andnot_ps(underflow, res);
}

LMI_AVX2 inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

LMI_AVX2 inline float hmax(__m256 v) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

LMI_AVX2 void softmaxTile(float* S, int ldS, int R, int N, float* m, float* l, float* O, int ldO, int Dp) {
  const float ninf = -std::numeric_limits<float>::infinity();
  for (int r = 0; r < R; r++) {
    float* s = S + static_cast<int64_t>(r) * ldS;
    __m256 vmax = _mm256_set1_ps(ninf);
    for (int c = 0; c < N; c += 8) vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(s + c));
    const float tmax = hmax(vmax);
    if (tmax == ninf) {
      for (int c = 0; c < N; c += 8) _mm256_storeu_ps(s + c, _mm256_setzero_ps());
      continue;
    }
    if (tmax > m[r]) {
      const float alpha = m[r] == ninf ? 0.0f : std::exp(m[r] - tmax);
      const __m256 va = _mm256_set1_ps(alpha);
      float* o = O + static_cast<int64_t>(r) * ldO;
      for (int d = 0; d < Dp; d += 8) _mm256_storeu_ps(o + d, _mm256_mul_ps(va, _mm256_loadu_ps(o + d)));
      l[r] *= alpha;
      m[r] = tmax;
    }
    const __m256 vm = _mm256_set1_ps(m[r]);
    __m256 sum = _mm256_setzero_ps();
    for (int c = 0; c < N; c += 8) {
      const __m256 e = expNonPositive(_mm256_sub_ps(_mm256_loadu_ps(s + c), vm));
      _mm256_storeu_ps(s + c, e);
      sum = _mm256_add_ps(sum, e);
    }
    l[r] += hsum(sum);
  }
}

// Decode tiles, fused (KernelOps::localLogits / accumulateValues; D % 8 == 0, rd % 8 == 0 for
// Normal pairs and rd % 16 == 0 for NeoX ones).
// One key at a time: its rows' products accumulate in one register per query row, 16 dims (a unit)
// at a time, and the four rows' sums come out of one horizontal reduction.

// acc[r] += Q[r][i..i+8) * x, r < R.
template <int R>
LMI_AVX2 inline void dotStep(__m256* acc, const float* Q, int ldq, int i, __m256 x) {
#pragma GCC unroll 4
  for (int r = 0; r < R; r++)
    acc[r] = _mm256_fmadd_ps(_mm256_loadu_ps(Q + static_cast<int64_t>(r) * ldq + i), x, acc[r]);
}

template <int R, KVType T>
LMI_AVX2 void localLogitsRows(int n, const void* const* keys, const void* const* ahead, int D, int rd,
                              RopePairing pairing, const float* const* C, const float* const* S, const float* Q,
                              int ldq, float* out, int ldo) {
  const int turned = C != nullptr ? rd : 0;
  const int64_t rowBytes = kvBytes(T, D);
  for (int c = 0; c < n; c++) {
    const void* key = keys[c];
    if (ahead != nullptr) prefetchRow(ahead[c], rowBytes);
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    if (pairing == RopePairing::NeoX && turned > 0) {
      // Pairs (k, k + rd/2): chunk i of the first half with chunk i of the second, as rotate().
      const int half = turned / 2;
      const float* Cc = C[c];
      const float* Sc = S[c];
      for (int k = 0; k < half; k += 8) {
        const __m256 a = load8<T>(key, k), b = load8<T>(key, k + half);
        // rotate()'s ya = a c - b s and yb = b c + a s with s = -S, the negation folded in.
        const __m256 cc = _mm256_loadu_ps(Cc + k);
        const __m256 ss = _mm256_loadu_ps(Sc + k);
        dotStep<R>(acc, Q, ldq, k, _mm256_fmadd_ps(b, ss, _mm256_mul_ps(a, cc)));
        dotStep<R>(acc, Q, ldq, k + half, _mm256_fnmadd_ps(a, ss, _mm256_mul_ps(b, cc)));
      }
    } else if (turned > 0) {
      // Normal pairs from lane coefficients: y = x C + (x, pairs swapped) S.
      const float* Cc = C[c];
      const float* Sc = S[c];
      for (int i = 0; i < turned; i += 8) {
        const __m256 x = load8<T>(key, i);
        const __m256 swapped = _mm256_permute_ps(x, 0xB1);
        dotStep<R>(acc, Q, ldq, i,
                   _mm256_fmadd_ps(x, _mm256_loadu_ps(Cc + i), _mm256_mul_ps(swapped, _mm256_loadu_ps(Sc + i))));
      }
    }
    for (int i = turned; i < D; i += 8) dotStep<R>(acc, Q, ldq, i, load8<T>(key, i));
    const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(acc[0], acc[1]), _mm256_hadd_ps(acc[2], acc[3]));
    alignas(16) float sums[4];
    _mm_store_ps(sums, _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) out[static_cast<int64_t>(r) * ldo + c] = sums[r];
  }
}

// Head dim 8, where a key is one vector: eight keys at a time are converted, turned (Normal pairs
// over all 8 dims, from lane coefficients) and transposed into dim-major vectors, so that a row's
// eight logits are eight FMAs instead of eight horizontal sums.
template <int R, KVType T>
LMI_AVX2 void localLogitsDim8(int n, const void* const* keys, const float* const* C, const float* const* S,
                              const float* Q, int ldq, float* out, int ldo) {
  for (int c0 = 0; c0 < n; c0 += 8) {
    const int m = n - c0 < 8 ? n - c0 : 8;
    __m256 k[8];
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++) {
      const int key = c0 + (j < m ? j : 0);  // a short last group repeats its first key, not stored
      const __m256 x = load8<T>(keys[key], 0);
      k[j] = C == nullptr ? x
                          : _mm256_fmadd_ps(x, _mm256_loadu_ps(C[key]),
                                            _mm256_mul_ps(_mm256_permute_ps(x, 0xB1), _mm256_loadu_ps(S[key])));
    }
    transpose8(k);
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
      const float* q = Q + static_cast<int64_t>(r) * ldq;
      __m256 acc = _mm256_mul_ps(_mm256_broadcast_ss(q), k[0]);
#pragma GCC unroll 8
      for (int d = 1; d < 8; d++) acc = _mm256_fmadd_ps(_mm256_broadcast_ss(q + d), k[d], acc);
      float* o = out + static_cast<int64_t>(r) * ldo + c0;
      if (m == 8) {
        _mm256_storeu_ps(o, acc);
      } else {
        alignas(32) float t[8];
        _mm256_store_ps(t, acc);
        for (int j = 0; j < m; j++) o[j] = t[j];
      }
    }
  }
}

template <KVType T>
LMI_AVX2 void localLogitsType(int R, int n, const void* const* keys, const void* const* ahead, int D, int rd,
                              RopePairing pairing, const float* const* C, const float* const* S, const float* Q,
                              int ldq, float* out, int ldo) {
  // At D 8 a rotation covers all 8 dims (rd % 8 == 0) and is Normal (NeoX needs rd % 16 == 0).
  if (D == 8) {
    switch (R) {
      case 1: return localLogitsDim8<1, T>(n, keys, C, S, Q, ldq, out, ldo);
      case 2: return localLogitsDim8<2, T>(n, keys, C, S, Q, ldq, out, ldo);
      case 3: return localLogitsDim8<3, T>(n, keys, C, S, Q, ldq, out, ldo);
      default: return localLogitsDim8<4, T>(n, keys, C, S, Q, ldq, out, ldo);
    }
  }
  switch (R) {
    case 1: localLogitsRows<1, T>(n, keys, ahead, D, rd, pairing, C, S, Q, ldq, out, ldo); break;
    case 2: localLogitsRows<2, T>(n, keys, ahead, D, rd, pairing, C, S, Q, ldq, out, ldo); break;
    case 3: localLogitsRows<3, T>(n, keys, ahead, D, rd, pairing, C, S, Q, ldq, out, ldo); break;
    default: localLogitsRows<4, T>(n, keys, ahead, D, rd, pairing, C, S, Q, ldq, out, ldo); break;
  }
}

LMI_AVX2 void localLogits(int R, int n, const void* const* keys, const void* const* ahead, KVType type, int D, int rd,
                          RopePairing pairing, const float* const* C, const float* const* S, const float* Q, int ldq,
                          float* out, int ldo) {
  if (type == KVType::Q8_0) localLogitsType<KVType::Q8_0>(R, n, keys, ahead, D, rd, pairing, C, S, Q, ldq, out, ldo);
  else if (type == KVType::F16) localLogitsType<KVType::F16>(R, n, keys, ahead, D, rd, pairing, C, S, Q, ldq, out, ldo);
  else localLogitsType<KVType::F32>(R, n, keys, ahead, D, rd, pairing, C, S, Q, ldq, out, ldo);
}

// Columns [d0, d0 + 8 W) of O for R rows, accumulated over all n values in microKernel's order;
// asks for the rows ahead[c] (rowBytes each) as it goes, when ahead is not null.
template <int R, int W, KVType T>
LMI_AVX2 void accumulateSpan(int n, const void* const* values, const void* const* ahead, int64_t rowBytes, int d0,
                             const float* P, int ldp, float* O, int ldo) {
  __m256 acc[R][W];
#pragma GCC unroll 4
  for (int r = 0; r < R; r++)
#pragma GCC unroll 2
    for (int w = 0; w < W; w++) acc[r][w] = _mm256_loadu_ps(O + static_cast<int64_t>(r) * ldo + d0 + 8 * w);
  for (int c = 0; c < n; c++) {
    if (ahead != nullptr) prefetchRow(ahead[c], rowBytes);
    __m256 v[W];
#pragma GCC unroll 2
    for (int w = 0; w < W; w++) v[w] = load8<T>(values[c], d0 + 8 * w);
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
      const __m256 p = _mm256_broadcast_ss(P + static_cast<int64_t>(r) * ldp + c);
#pragma GCC unroll 2
      for (int w = 0; w < W; w++) acc[r][w] = _mm256_fmadd_ps(p, v[w], acc[r][w]);
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < R; r++)
#pragma GCC unroll 2
    for (int w = 0; w < W; w++) _mm256_storeu_ps(O + static_cast<int64_t>(r) * ldo + d0 + 8 * w, acc[r][w]);
}

// Sixteen columns at a time, and a last eight when D % 16 == 8; the first span asks for the rows ahead.
template <int R, KVType T>
LMI_AVX2 void accumulateRows(int n, const void* const* values, const void* const* ahead, int D, const float* P,
                             int ldp, float* O, int ldo) {
  const int64_t rowBytes = kvBytes(T, D);
  int d0 = 0;
  for (; d0 + 16 <= D; d0 += 16)
    accumulateSpan<R, 2, T>(n, values, d0 == 0 ? ahead : nullptr, rowBytes, d0, P, ldp, O, ldo);
  if (d0 < D) accumulateSpan<R, 1, T>(n, values, d0 == 0 ? ahead : nullptr, rowBytes, d0, P, ldp, O, ldo);
}

template <KVType T>
LMI_AVX2 void accumulateType(int R, int n, const void* const* values, const void* const* ahead, int D, const float* P,
                             int ldp, float* O, int ldo) {
  switch (R) {
    case 1: accumulateRows<1, T>(n, values, ahead, D, P, ldp, O, ldo); break;
    case 2: accumulateRows<2, T>(n, values, ahead, D, P, ldp, O, ldo); break;
    case 3: accumulateRows<3, T>(n, values, ahead, D, P, ldp, O, ldo); break;
    default: accumulateRows<4, T>(n, values, ahead, D, P, ldp, O, ldo); break;
  }
}

LMI_AVX2 void accumulateValues(int R, int n, const void* const* values, const void* const* ahead, KVType type, int D,
                               const float* P, int ldp, float* O, int ldo) {
  if (type == KVType::Q8_0) accumulateType<KVType::Q8_0>(R, n, values, ahead, D, P, ldp, O, ldo);
  else if (type == KVType::F16) accumulateType<KVType::F16>(R, n, values, ahead, D, P, ldp, O, ldo);
  else accumulateType<KVType::F32>(R, n, values, ahead, D, P, ldp, O, ldo);
}

const KernelOps kAvx2 = {gemm, gemmNT, loadRows, rotate, transpose, softmaxTile, localLogits, accumulateValues,
                          nullptr, true};

}  // namespace

const KernelOps* avx2Ops() { return &kAvx2; }

}  // namespace lmi::attn::detail

#else  // not x86, or a compiler without GCC-style target attributes: portable path only

namespace lmi::attn::detail {
const KernelOps* avx2Ops() { return nullptr; }
}  // namespace lmi::attn::detail

#endif
