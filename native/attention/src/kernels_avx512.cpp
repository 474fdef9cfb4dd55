// AVX-512 implementation of the decode tiles (KernelOps::localLogits, accumulateValues, and the
// head-dim-8 denseTileDim8), of the softmax step every tile takes (softmaxTile) and of the
// prefill tiles' products (gemm, with the AVX2 kernel's bits); every other primitive is the AVX2
// one. Compiled with per-function target attributes, selected at runtime by cpuHasAvx512().
//
// The key side is the AVX2 decode tiles' fusion (a key goes from the cache through conversion and
// rotation to its dot products in registers), sixteen lanes wide: a group's sixteen (row, key)
// products are reduced to logits together by one shuffle tree. The value side keeps up to four
// rows by 64 dims of output in registers across a tile's keys.
#include "kernels.h"
#include "exp_poly.h"
#include "rope_table.h"

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

// GCC 12's _mm512_cvtph_ps and _mm512_castps512_ps256 pass an undefined vector as the (fully
// overwritten) merge source, which -W(maybe-)uninitialized reports at every use.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

#define LMI_AVX512 __attribute__((target("avx512f,avx512vl,avx512dq,avx2,fma,f16c")))

namespace lmi::attn::detail {
namespace {

constexpr int kMaxVec = 16;  // D <= 256: sixteen 16-lane vectors per row

// Shapes whose rows or rotated spans are not whole 16-lane vectors take the AVX2 primitives, 8
// lanes wide: head dims that are an odd multiple of 8 (e.g. 8: stories260K, whose values are
// summed here though, in the dense tile's order), Normal rotary widths that are an odd multiple
// of 8, NeoX ones that are an odd multiple of 16 (e.g. 16: Pythia-160M, StableLM-2), whose halves
// would split a vector.
const KernelOps* gAvx2 = nullptr;

// Sixteen elements [16 i, 16 i + 16) of a Q8_0 row, as floats: d * q, exact in f32 (an 11-bit
// scale times an 8-bit integer), so the arithmetic after it is the f32 row's, bit for bit.
LMI_AVX512 inline __m512 loadQ8(const void* row, int i) {
  const uint8_t* b = static_cast<const uint8_t*>(row) + (i / 2) * kQ8BlockBytes;
  uint16_t bits;
  std::memcpy(&bits, b, 2);
  const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 2 + 16 * (i % 2)));
  const __m512 q = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(bytes));
  return _mm512_mul_ps(q, _mm512_set1_ps(_cvtsh_ss(bits)));
}

// v[i] = elements [16 i, 16 i + 16) of the row, as floats (NV: see localLogitsRows).
template <int NV>
LMI_AVX512 inline void loadRow(const void* row, KVType type, int nv, __m512* v) {
  const int n = NV ? NV : nv;
  if (type == KVType::Q8_0) {
#pragma GCC unroll 8
    for (int i = 0; i < n; i++) v[i] = loadQ8(row, i);
  } else if (type == KVType::F16) {
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
  if constexpr (NV != 0) {
    // Every index a constant, so that v stays in registers (a variable index would put the whole
    // array in memory, for every pairing).
#pragma GCC unroll 8
    for (int H = 1; H <= NV / 2; H++)
      if (H == h) {
#pragma GCC unroll 8
        for (int i = 0; i < H; i++) turnNeoX(v[i], v[i + H], C + 16 * i, S + 16 * i);
      }
    return;
  }
  for (int i = 0; i < h; i++) turnNeoX(v[i], v[i + h], C + 16 * i, S + 16 * i);
}

// Sixteen horizontal sums at once: lane i of the result is the sum of the 16 lanes of x[i]. Lanes
// are folded within their 128-bit blocks first, and only the last two steps move whole blocks:
// 24 in-block shuffles, 6 block shuffles and 15 adds, where folding blocks first takes 24 block
// shuffles (the decode tile measured up to 3% faster this way, in L2).
LMI_AVX512 inline __m512 sum16(const __m512* x) {
  __m512 s[8];  // block beta of s[i]: [x_2i, x_2i+1, x_2i, x_2i+1], each the sum of lanes (0, 2) or (1, 3)
#pragma GCC unroll 8
  for (int i = 0; i < 8; i++)
    s[i] = _mm512_add_ps(_mm512_unpacklo_ps(x[2 * i], x[2 * i + 1]), _mm512_unpackhi_ps(x[2 * i], x[2 * i + 1]));
  __m512 v[4];  // block beta of v[k]: the block sums of x_4k .. x_4k+3
#pragma GCC unroll 4
  for (int k = 0; k < 4; k++)
    v[k] = _mm512_add_ps(_mm512_shuffle_ps(s[2 * k], s[2 * k + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm512_shuffle_ps(s[2 * k], s[2 * k + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  // Blocks: w01 = [v0 (0+1), v0 (2+3), v1 (0+1), v1 (2+3)], w23 likewise.
  const __m512 w01 = _mm512_add_ps(_mm512_shuffle_f32x4(v[0], v[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                   _mm512_shuffle_f32x4(v[0], v[1], _MM_SHUFFLE(3, 1, 3, 1)));
  const __m512 w23 = _mm512_add_ps(_mm512_shuffle_f32x4(v[2], v[3], _MM_SHUFFLE(2, 0, 2, 0)),
                                   _mm512_shuffle_f32x4(v[2], v[3], _MM_SHUFFLE(3, 1, 3, 1)));
  return _mm512_add_ps(_mm512_shuffle_f32x4(w01, w23, _MM_SHUFFLE(2, 0, 2, 0)),
                       _mm512_shuffle_f32x4(w01, w23, _MM_SHUFFLE(3, 1, 3, 1)));
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
// 4 (r + RP (j / 4)) + j % 4, so block r + RP (j / 4) of the sums holds row r's keys 4 (j / 4) ..
// 4 (j / 4) + 3 in order.
template <int R, int NV>
LMI_AVX512 void localLogitsRows(int n, const void* const* keys, const void* const* ahead, KVType type, int D, int rd,
                                RopePairing pairing, const float* const* C, const float* const* S, const float* Q,
                                int ldq, float* out, int ldo) {
  constexpr int RP = R == 3 ? 4 : R;
  constexpr int KG = 16 / RP;  // keys per group
  const int nv = NV ? NV : D / 16;
  const int64_t rowBytes = kvBytes(type, D);
  for (int c0 = 0; c0 < n; c0 += KG) {
    const int m = n - c0 < KG ? n - c0 : KG;
    if (ahead != nullptr)
      for (int j = 0; j < m; j++) prefetchRow(ahead[c0 + j], rowBytes);
    __m512 x[16];
    if constexpr (RP != R) {  // row 3 of every group of four keys
      for (int g = 0; g < KG / 4; g++)
        for (int i = 0; i < 4; i++) x[4 * (3 + RP * g) + i] = _mm512_setzero_ps();
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
        x[4 * (r + RP * (j / 4)) + j % 4] = p;
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
  // p 2^n, as the AVX2 code's multiplication by 2^n built from its exponent bits (n >= -126, so
  // 2^n is exact and both round the same product).
  return _mm512_maskz_scalef_ps(static_cast<__mmask16>(~underflow), p, n);
}

// KernelOps::gemm sixteen lanes wide: a C block of RB rows x 16 NB columns, each element summed
// over k in order with one FMA per term from 0 (or from C), as the AVX2 microkernel does, so
// the two give the same bits. The accumulators stay in registers.
template <int RB, int NB>
LMI_AVX512 inline void microKernel(int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc,
                                   bool accumulate) {
  __m512 acc[RB][NB];
#pragma GCC unroll 8
  for (int r = 0; r < RB; r++)
#pragma GCC unroll 4
    for (int v = 0; v < NB; v++)
      acc[r][v] = accumulate ? _mm512_loadu_ps(C + static_cast<int64_t>(r) * ldc + 16 * v) : _mm512_setzero_ps();
  for (int k = 0; k < K; k++) {
    __m512 b[NB];
    const float* brow = B + static_cast<int64_t>(k) * ldb;
#pragma GCC unroll 4
    for (int v = 0; v < NB; v++) b[v] = _mm512_loadu_ps(brow + 16 * v);
#pragma GCC unroll 8
    for (int r = 0; r < RB; r++) {
      const __m512 a = _mm512_set1_ps(A[static_cast<int64_t>(r) * lda + k]);
#pragma GCC unroll 4
      for (int v = 0; v < NB; v++) acc[r][v] = _mm512_fmadd_ps(a, b[v], acc[r][v]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < RB; r++)
#pragma GCC unroll 4
    for (int v = 0; v < NB; v++) _mm512_storeu_ps(C + static_cast<int64_t>(r) * ldc + 16 * v, acc[r][v]);
}

template <int NB>
LMI_AVX512 inline void gemmColumns(int M, int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc,
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

// Columns in blocks of 32 and 16; a last 8 (N % 16 == 8) takes the AVX2 kernel.
LMI_AVX512 void gemm(int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc,
                     bool accumulate) {
  int n = 0;
  for (; n + 32 <= N; n += 32) gemmColumns<2>(M, K, A, lda, B + n, ldb, C + n, ldc, accumulate);
  for (; n + 16 <= N; n += 16) gemmColumns<1>(M, K, A, lda, B + n, ldb, C + n, ldc, accumulate);
  if (n < N) gAvx2->gemm(M, N - n, K, A, lda, B + n, ldb, C + n, ldc, accumulate);
}

// Lanes [c, c + 16) of a row of n (n % 8 == 0): all sixteen, or the last eight.
LMI_AVX512 inline __mmask16 laneMask(int c, int n) { return c + 16 <= n ? 0xFFFF : 0x00FF; }

// Lanes [c, c + 16) of a row (all sixteen when Whole, N % 16 == 0 then): plain loads and stores
// where the rows are whole, which ran the head-dim-8 tile ~4% faster here than masked ones (the
// rows are stored, read back, and read again by the value sums within a few hundred cycles).
template <bool Whole>
LMI_AVX512 inline __m512 loadLanes(const float* s, int c, int n, __m512 fill) {
  if constexpr (Whole) return _mm512_loadu_ps(s + c);
  else return _mm512_mask_loadu_ps(fill, laneMask(c, n), s + c);
}
template <bool Whole>
LMI_AVX512 inline void storeLanes(float* s, int c, int n, __m512 x) {
  if constexpr (Whole) _mm512_storeu_ps(s + c, x);
  else _mm512_mask_storeu_ps(s + c, laneMask(c, n), x);
}

// KernelOps::softmaxTile, sixteen lanes wide: per element the same operations as the AVX2 one; the
// row sums are added in a different order. Inline, for the dense tile (constant R and Dp there).
template <bool Whole>
LMI_AVX512 inline void softmaxStep(float* S, int ldS, int R, int N, float* m, float* l, float* O, int ldO, int Dp) {
  const float ninf = -std::numeric_limits<float>::infinity();
  const __m512 vninf = _mm512_set1_ps(ninf);
  for (int r = 0; r < R; r++) {
    float* s = S + static_cast<int64_t>(r) * ldS;
    __m512 vmax = vninf;
    for (int c = 0; c < N; c += 16) vmax = _mm512_max_ps(vmax, loadLanes<Whole>(s, c, N, vninf));
    // Most tiles raise no lane above a finite running max: then the exponentials need not wait
    // for the row's max (a chain of shuffles), and every step below keeps its values.
    const bool raises = m[r] == ninf || _mm512_cmp_ps_mask(vmax, _mm512_set1_ps(m[r]), _CMP_GT_OQ) != 0;
    const float tmax = raises ? _mm512_reduce_max_ps(vmax) : m[r];
    if (tmax == ninf) {
      for (int c = 0; c < N; c += 16) storeLanes<Whole>(s, c, N, _mm512_setzero_ps());
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
      const __m512 e = expNonPositive(_mm512_sub_ps(loadLanes<Whole>(s, c, N, vninf), vm));
      storeLanes<Whole>(s, c, N, e);
      sum = _mm512_add_ps(sum, e);
    }
    l[r] += _mm512_reduce_add_ps(sum);
  }
}

LMI_AVX512 void softmaxTile(float* S, int ldS, int R, int N, float* m, float* l, float* O, int ldO, int Dp) {
  if (N % 16 == 0) softmaxStep<true>(S, ldS, R, N, m, l, O, ldO, Dp);
  else softmaxStep<false>(S, ldS, R, N, m, l, O, ldO, Dp);
}

// Value sums at head dim 8 (KernelOps::denseTileDim8's order; accumulateValues takes it at D 8
// too, so that a tile gives the same bits on either path): keys 2j and 2j + 1 in one vector with
// their dims interleaved (lane 2d + h: key 2j + h, dim d), so that their two weights are one
// 64-bit broadcast from memory. acc[r][0] holds chains 0 and 1 (even and odd lanes: keys
// c % 4 == 0, 1), acc[r][1] chains 2 and 3; chain 0 starts from O.
LMI_AVX512 inline __m512i interleaveLanes() {
  return _mm512_setr_epi32(0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15);
}

template <int R>
LMI_AVX512 inline void chainsStart(__m512 (&acc)[R][2], const float* O, int ldo) {
#pragma GCC unroll 4
  for (int r = 0; r < R; r++) {
    const __m512 o = _mm512_insertf32x8(_mm512_setzero_ps(), _mm256_loadu_ps(O + static_cast<int64_t>(r) * ldo), 0);
    acc[r][0] = _mm512_maskz_permutexvar_ps(0x5555, interleaveLanes(), o);
    acc[r][1] = _mm512_setzero_ps();
  }
}

// Keys c and c + 1 ([c | c + 1] in pair, c % 4 == 2 h), weighted by P[r][c], P[r][c + 1] (P points
// at row 0's P[c]).
template <int R>
LMI_AVX512 inline void chainsAdd(__m512 (&acc)[R][2], int h, __m512 pair, const float* P, int ldp) {
  const __m512 v = _mm512_permutexvar_ps(interleaveLanes(), pair);
#pragma GCC unroll 4
  for (int r = 0; r < R; r++) {
    double two;
    std::memcpy(&two, P + static_cast<int64_t>(r) * ldp, sizeof two);
    acc[r][h] = _mm512_fmadd_ps(_mm512_castpd_ps(_mm512_set1_pd(two)), v, acc[r][h]);
  }
}

// The last key c of an odd count alone ([c | 0] in pair), its partner's weight 0.
template <int R>
LMI_AVX512 inline void chainsAddLast(__m512 (&acc)[R][2], int h, __m512 pair, const float* P, int ldp) {
  const __m512 v = _mm512_permutexvar_ps(interleaveLanes(), pair);
#pragma GCC unroll 4
  for (int r = 0; r < R; r++) {
    const float w[2] = {P[static_cast<int64_t>(r) * ldp], 0.0f};
    double two;
    std::memcpy(&two, w, sizeof two);
    acc[r][h] = _mm512_fmadd_ps(_mm512_castpd_ps(_mm512_set1_pd(two)), v, acc[r][h]);
  }
}

// O[r] = (chain 0 + chain 2) + (chain 1 + chain 3).
template <int R>
LMI_AVX512 inline void chainsFinish(__m512 (&acc)[R][2], float* O, int ldo) {
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 0, 2, 4, 6, 8, 10, 12, 14);
  const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 1, 3, 5, 7, 9, 11, 13, 15);
#pragma GCC unroll 4
  for (int r = 0; r < R; r++) {
    const __m512 t = _mm512_add_ps(acc[r][0], acc[r][1]);
    _mm256_storeu_ps(O + static_cast<int64_t>(r) * ldo,
                     _mm256_add_ps(_mm512_castps512_ps256(_mm512_permutexvar_ps(even, t)),
                                   _mm512_castps512_ps256(_mm512_permutexvar_ps(odd, t))));
  }
}

// Rows a and b of eight elements (f16 or f32) as [a | b], in floats.
template <bool F16>
LMI_AVX512 inline __m512 loadRowPair(const void* a, const void* b) {
  if constexpr (F16) {
    const __m128i lo = _mm_loadu_si128(static_cast<const __m128i*>(a));
    const __m128i hi = _mm_loadu_si128(static_cast<const __m128i*>(b));
    return _mm512_cvtph_ps(_mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1));
  } else {
    return _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_loadu_ps(static_cast<const float*>(a))),
                              _mm256_loadu_ps(static_cast<const float*>(b)), 1);
  }
}

// A row of eight elements as [row | 0].
template <bool F16>
LMI_AVX512 inline __m512 loadRowAlone(const void* row) {
  if constexpr (F16)
    return _mm512_cvtph_ps(_mm256_zextsi128_si256(_mm_loadu_si128(static_cast<const __m128i*>(row))));
  else
    return _mm512_insertf32x8(_mm512_setzero_ps(), _mm256_loadu_ps(static_cast<const float*>(row)), 0);
}

// accumulateValues at D 8, in the chains' order.
template <int R, bool F16>
LMI_AVX512 void accumulateDim8(int n, const void* const* values, const float* P, int ldp, float* O, int ldo) {
  __m512 acc[R][2];
  chainsStart<R>(acc, O, ldo);
  const int pairs = n / 2;
  int j = 0;
  for (; j + 2 <= pairs; j += 2) {
    chainsAdd<R>(acc, 0, loadRowPair<F16>(values[2 * j], values[2 * j + 1]), P + 2 * j, ldp);
    chainsAdd<R>(acc, 1, loadRowPair<F16>(values[2 * j + 2], values[2 * j + 3]), P + 2 * j + 2, ldp);
  }
  if (j < pairs) chainsAdd<R>(acc, 0, loadRowPair<F16>(values[2 * j], values[2 * j + 1]), P + 2 * j, ldp);
  if (n & 1) chainsAddLast<R>(acc, pairs & 1, loadRowAlone<F16>(values[n - 1]), P + n - 1, ldp);
  chainsFinish<R>(acc, O, ldo);
}

template <bool F16>
LMI_AVX512 void accumulateDim8Rows(int R, int n, const void* const* values, const float* P, int ldp, float* O,
                                   int ldo) {
  switch (R) {
    case 1: accumulateDim8<1, F16>(n, values, P, ldp, O, ldo); break;
    case 2: accumulateDim8<2, F16>(n, values, P, ldp, O, ldo); break;
    case 3: accumulateDim8<3, F16>(n, values, P, ldp, O, ldo); break;
    default: accumulateDim8<4, F16>(n, values, P, ldp, O, ldo); break;
  }
}

// O[r][d0, d0 + 16 W) += sum over c < n of P[r][c] V_c for r < R: the R x W accumulators stay in
// registers across the keys (enough independent FMA chains to keep both 512-bit ports busy), and
// each element takes one FMA per term in c order, as the AVX2 version does. Asks for the rows
// ahead[c] (rowBytes each) as it goes, when ahead is not null.
template <int R, int W, KVType T>
LMI_AVX512 void accumulateSpan(int n, const void* const* values, const void* const* ahead, int64_t rowBytes, int d0,
                               const float* P, int ldp, float* O, int ldo) {
  __m512 acc[R][W];
#pragma GCC unroll 4
  for (int r = 0; r < R; r++)
#pragma GCC unroll 4
    for (int w = 0; w < W; w++) acc[r][w] = _mm512_loadu_ps(O + static_cast<int64_t>(r) * ldo + d0 + 16 * w);
  for (int c = 0; c < n; c++) {
    if (ahead != nullptr) prefetchRow(ahead[c], rowBytes);
    __m512 v[W];
    if constexpr (T == KVType::Q8_0) {
#pragma GCC unroll 4
      for (int w = 0; w < W; w++) v[w] = loadQ8(values[c], d0 / 16 + w);
    } else if constexpr (T == KVType::F16) {
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

// Sixty-four columns at a time; the first span asks for the rows ahead.
template <int R, KVType T>
LMI_AVX512 void accumulateRows(int n, const void* const* values, const void* const* ahead, int D, const float* P,
                               int ldp, float* O, int ldo) {
  const int64_t rowBytes = kvBytes(T, D);
  for (int d0 = 0; d0 < D; d0 += 64) {
    const void* const* a = d0 == 0 ? ahead : nullptr;
    switch ((D - d0) / 16) {
      case 1: accumulateSpan<R, 1, T>(n, values, a, rowBytes, d0, P, ldp, O, ldo); break;
      case 2: accumulateSpan<R, 2, T>(n, values, a, rowBytes, d0, P, ldp, O, ldo); break;
      case 3: accumulateSpan<R, 3, T>(n, values, a, rowBytes, d0, P, ldp, O, ldo); break;
      default: accumulateSpan<R, 4, T>(n, values, a, rowBytes, d0, P, ldp, O, ldo); break;
    }
  }
}

template <KVType T>
LMI_AVX512 void accumulateType(int R, int n, const void* const* values, const void* const* ahead, int D,
                               const float* P, int ldp, float* O, int ldo) {
  switch (R) {
    case 1: accumulateRows<1, T>(n, values, ahead, D, P, ldp, O, ldo); break;
    case 2: accumulateRows<2, T>(n, values, ahead, D, P, ldp, O, ldo); break;
    case 3: accumulateRows<3, T>(n, values, ahead, D, P, ldp, O, ldo); break;
    default: accumulateRows<4, T>(n, values, ahead, D, P, ldp, O, ldo); break;
  }
}

LMI_AVX512 void accumulateValues(int R, int n, const void* const* values, const void* const* ahead, KVType type,
                                 int D, const float* P, int ldp, float* O, int ldo) {
  if (D == 8) {
    if (type == KVType::F16) accumulateDim8Rows<true>(R, n, values, P, ldp, O, ldo);
    else accumulateDim8Rows<false>(R, n, values, P, ldp, O, ldo);
    return;
  }
  if (D % 16 != 0) return gAvx2->accumulateValues(R, n, values, ahead, type, D, P, ldp, O, ldo);
  if (type == KVType::Q8_0) accumulateType<KVType::Q8_0>(R, n, values, ahead, D, P, ldp, O, ldo);
  else if (type == KVType::F16) accumulateType<KVType::F16>(R, n, values, ahead, D, P, ldp, O, ldo);
  else accumulateType<KVType::F32>(R, n, values, ahead, D, P, ldp, O, ldo);
}

// The dense head-dim-8 decode tile (KernelOps::denseTileDim8), sixteen keys at a time: their rows
// are read as adjacent pairs [key 2j | key 2j + 1] (one load each), converted, and transposed into
// eight dim-major vectors, so that the rotation and the logits are plain FMAs over sixteen keys.
// The values are read two keys per vector.
constexpr int kDenseLd = 64;  // a row of logits: up to 64 keys

// One butterfly stage of the transpose, as vpermt2ps indices over a pair of vectors (a, b) that
// differ in one vector bit: lo gathers the elements whose lane bit L is 0, hi those where it is
// 1, and lane bit L of both results is the vector bit (0: from a, 1: from b).
struct Butterfly {
  alignas(64) int32_t lo[16];
  alignas(64) int32_t hi[16];
};
constexpr Butterfly butterfly(int L) {
  Butterfly b{};
  for (int lane = 0; lane < 16; lane++) {
    b.lo[lane] = (lane & L) ? (16 | (lane & ~L)) : lane;
    b.hi[lane] = (lane & L) ? (16 | lane) : (lane | L);
  }
  return b;
}
constexpr Butterfly kButterfly[3] = {butterfly(1), butterfly(2), butterfly(4)};

// The last stage for x[j] = [key 2j | key 2j + 1]: after two butterflies (stage s swaps vector
// bit s, a key bit, with lane bit s, a dim bit) key k, dim d sits in vector (d0, d1, k3) at lane
// (k1, k2, d2, k0) (bits low to high); the third gathers dims d2 = 0 (lo) and 1 (hi) with key k at
// lane k, so that the logits come out in key order.
constexpr Butterfly adjacentLast() {
  Butterfly b{};
  for (int k = 0; k < 16; k++) {
    const int src = ((k >> 3) & 1) * 16 + ((k >> 1) & 1) + ((k >> 2) & 1) * 2 + (k & 1) * 8;
    b.lo[k] = src;
    b.hi[k] = src + 4;
  }
  return b;
}
constexpr Butterfly kAdjacentLast = adjacentLast();

// x[j] = [key 2j | key 2j + 1] (eight dims each) in, x[d] = dim d of keys 0..15 out.
LMI_AVX512 inline void transposeAdjacentKeys16(__m512* x) {
#pragma GCC unroll 3
  for (int s = 0; s < 3; s++) {
    const int V = 1 << s;
    const __m512i lo = _mm512_load_si512(s < 2 ? kButterfly[s].lo : kAdjacentLast.lo);
    const __m512i hi = _mm512_load_si512(s < 2 ? kButterfly[s].hi : kAdjacentLast.hi);
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) {
      if (i & V) continue;
      const __m512 a = x[i], b = x[i | V];
      x[i] = _mm512_permutex2var_ps(a, lo, b);
      x[i | V] = _mm512_permutex2var_ps(a, hi, b);
    }
  }
}

// Rows 2 j and 2 j + 1, which are adjacent: one load.
template <bool F16>
LMI_AVX512 inline __m512 loadAdjacentPair(const void* rows, int j) {
  if constexpr (F16)
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(rows) + 16 * j)));
  else
    return _mm512_loadu_ps(static_cast<const float*>(rows) + 16 * j);
}

template <int R, bool F16>
LMI_AVX512 void denseTileRows(int n, const void* k, const void* v, const float* run, const float* qC, const float* qS,
                              const float* Q, int ldq, float* m, float* l, float* O, int ldo) {
  constexpr size_t kRowBytes = 8 * (F16 ? 2 : 4);
  const __m512 vninf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  alignas(64) float S[R][kDenseLd];
  const int N16 = (n + 15) & ~15;
  // The query elements broadcast once, read back by the FMAs as memory operands (a load each,
  // where a register broadcast per use would take the shuffle port the transpose needs).
  alignas(64) float qb[R][8][16];
  {
    __m256 c = _mm256_setzero_ps(), s = _mm256_setzero_ps();
    if (qC != nullptr) {  // rotate()'s four-pair step: x c -+ (x, pairs swapped) s
      const __m128 c4 = _mm_loadu_ps(qC), s4 = _mm_loadu_ps(qS);
      c = _mm256_set_m128(_mm_unpackhi_ps(c4, c4), _mm_unpacklo_ps(c4, c4));
      s = _mm256_set_m128(_mm_unpackhi_ps(s4, s4), _mm_unpacklo_ps(s4, s4));
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
      alignas(32) float q[8];
      const __m256 x = _mm256_loadu_ps(Q + static_cast<int64_t>(r) * ldq);
      _mm256_store_ps(q, qC == nullptr ? x
                                       : _mm256_addsub_ps(_mm256_mul_ps(x, c),
                                                          _mm256_mul_ps(_mm256_permute_ps(x, 0xB1), s)));
#pragma GCC unroll 8
      for (int d = 0; d < 8; d++) _mm512_store_ps(qb[r][d], _mm512_set1_ps(q[d]));
    }
  }

  // Logits, sixteen keys at a time; -inf beyond n.
  for (int c0 = 0; c0 < n; c0 += 16) {
    const int live = n - c0 < 16 ? n - c0 : 16;
    const void* rows = static_cast<const char*>(k) + c0 * kRowBytes;
    alignas(64) unsigned char tail[16 * kRowBytes];
    if (live < 16) {  // never read past the tile's last row
      std::memset(tail, 0, sizeof tail);
      std::memcpy(tail, rows, live * kRowBytes);
      rows = tail;
    }
    __m512 x[8];
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++) x[j] = loadAdjacentPair<F16>(rows, j);
    transposeAdjacentKeys16(x);
    if (run != nullptr) {
      // Pair i is dims (2i, 2i + 1): the lane form's x C + swapped S, written per dim.
      const float* cs = run + (RopeTable::kLaneRows - n + c0);
#pragma GCC unroll 4
      for (int i = 0; i < 4; i++) {
        const __m512 c = _mm512_loadu_ps(cs + (2 * i) * RopeTable::kRunWidth);
        const __m512 s = _mm512_loadu_ps(cs + (2 * i + 1) * RopeTable::kRunWidth);
        const __m512 a = x[2 * i], b = x[2 * i + 1];
        x[2 * i] = _mm512_fmadd_ps(a, c, _mm512_mul_ps(b, s));
        x[2 * i + 1] = _mm512_fmsub_ps(b, c, _mm512_mul_ps(a, s));
      }
    }
    const __mmask16 keep = static_cast<__mmask16>(live == 16 ? 0xFFFF : (1u << live) - 1);
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
      __m512 acc = _mm512_mul_ps(_mm512_load_ps(qb[r][0]), x[0]);
#pragma GCC unroll 8
      for (int d = 1; d < 8; d++) acc = _mm512_fmadd_ps(_mm512_load_ps(qb[r][d]), x[d], acc);
      _mm512_store_ps(S[r] + c0, _mm512_mask_mov_ps(vninf, keep, acc));
    }
  }

  // softmaxTile's step (the logits are -inf beyond n, so sixteen-key chunks are whole rows).
  softmaxStep<true>(S[0], kDenseLd, R, N16, m, l, O, ldo, 8);

  // Values: pairs of keys, the chains' order.
  __m512 acc[R][2];
  chainsStart<R>(acc, O, ldo);
  const int pairs = n / 2;
  int j = 0;
  for (; j + 2 <= pairs; j += 2) {  // two pairs per step, so that both chains stay in registers
    chainsAdd<R>(acc, 0, loadAdjacentPair<F16>(v, j), &S[0][2 * j], kDenseLd);
    chainsAdd<R>(acc, 1, loadAdjacentPair<F16>(v, j + 1), &S[0][2 * j + 2], kDenseLd);
  }
  if (j < pairs) chainsAdd<R>(acc, 0, loadAdjacentPair<F16>(v, j), &S[0][2 * j], kDenseLd);
  if (n & 1) chainsAddLast<R>(acc, pairs & 1, loadRowAlone<F16>(static_cast<const char*>(v) + (n - 1) * kRowBytes),
                              &S[0][n - 1], kDenseLd);
  chainsFinish<R>(acc, O, ldo);
}

template <bool F16>
LMI_AVX512 void denseTileType(int R, int n, const void* k, const void* v, const float* run, const float* qC,
                              const float* qS, const float* Q, int ldq, float* m, float* l, float* O, int ldo) {
  switch (R) {
    case 1: denseTileRows<1, F16>(n, k, v, run, qC, qS, Q, ldq, m, l, O, ldo); break;
    case 2: denseTileRows<2, F16>(n, k, v, run, qC, qS, Q, ldq, m, l, O, ldo); break;
    case 3: denseTileRows<3, F16>(n, k, v, run, qC, qS, Q, ldq, m, l, O, ldo); break;
    default: denseTileRows<4, F16>(n, k, v, run, qC, qS, Q, ldq, m, l, O, ldo); break;
  }
}

LMI_AVX512 void denseTileDim8(int R, int n, const void* k, const void* v, KVType type, const float* run,
                              const float* qC, const float* qS, const float* Q, int ldq, float* m, float* l, float* O,
                              int ldo) {
  if (type == KVType::F16) denseTileType<true>(R, n, k, v, run, qC, qS, Q, ldq, m, l, O, ldo);
  else denseTileType<false>(R, n, k, v, run, qC, qS, Q, ldq, m, l, O, ldo);
}

template <int NV>
LMI_AVX512 void localLogitsWidth(int R, int n, const void* const* keys, const void* const* ahead, KVType type, int D,
                                 int rd, RopePairing pairing, const float* const* C, const float* const* S,
                                 const float* Q, int ldq, float* out, int ldo) {
  switch (R) {
    case 1: localLogitsRows<1, NV>(n, keys, ahead, type, D, rd, pairing, C, S, Q, ldq, out, ldo); break;
    case 2: localLogitsRows<2, NV>(n, keys, ahead, type, D, rd, pairing, C, S, Q, ldq, out, ldo); break;
    case 3: localLogitsRows<3, NV>(n, keys, ahead, type, D, rd, pairing, C, S, Q, ldq, out, ldo); break;
    default: localLogitsRows<4, NV>(n, keys, ahead, type, D, rd, pairing, C, S, Q, ldq, out, ldo); break;
  }
}

LMI_AVX512 void localLogits(int R, int n, const void* const* keys, const void* const* ahead, KVType type, int D,
                            int rd, RopePairing pairing, const float* const* C, const float* const* S, const float* Q,
                            int ldq, float* out, int ldo) {
  if (D % 16 != 0 || (C != nullptr && rd % (pairing == RopePairing::NeoX ? 32 : 16) != 0))
    return gAvx2->localLogits(R, n, keys, ahead, type, D, rd, pairing, C, S, Q, ldq, out, ldo);
  switch (D) {
    case 64: localLogitsWidth<4>(R, n, keys, ahead, type, D, rd, pairing, C, S, Q, ldq, out, ldo); break;
    case 128: localLogitsWidth<8>(R, n, keys, ahead, type, D, rd, pairing, C, S, Q, ldq, out, ldo); break;
    default: localLogitsWidth<0>(R, n, keys, ahead, type, D, rd, pairing, C, S, Q, ldq, out, ldo); break;
  }
}

}  // namespace

const KernelOps* avx512Ops() {
  const KernelOps* base = avx2Ops();
  if (base == nullptr) return nullptr;
  static const KernelOps ops = [base] {
    gAvx2 = base;
    KernelOps o = *base;
    o.gemm = gemm;
    o.localLogits = localLogits;
    o.accumulateValues = accumulateValues;
    o.softmaxTile = softmaxTile;
    o.denseTileDim8 = denseTileDim8;
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
