// AVX-512 implementation of the decode tiles' key side (KernelOps::localLogits); every other
// primitive is the AVX2 one, accumulateValues included (16 lanes measured ~2% faster there: not
// worth a second copy). Compiled with per-function target attributes, selected at runtime by
// cpuHasAvx512().
//
// The same fusion as the AVX2 decode tiles (a key goes from the cache through conversion and
// rotation to its dot products in registers), sixteen lanes wide, with a tile's keys taken four
// at a time: 32 registers hold a whole key row of up to 128 dims and the partial sums of four keys
// for four query rows.
#include "kernels.h"

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#include <immintrin.h>

#include <cstdint>

// GCC 12's _mm512_cvtph_ps passes _mm512_undefined_ps() as the (fully overwritten) merge source,
// which -Wmaybe-uninitialized reports at every use.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#define LMI_AVX512 __attribute__((target("avx512f,avx512vl,avx512dq,avx2,fma,f16c")))

namespace lmi::attn::detail {
namespace {

constexpr int kMaxVec = 16;  // D <= 256: sixteen 16-lane vectors per row

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

// ya = a c - (b s), yb = b c + (a s) for a pair (a, b): the roundings of the AVX2 rotate(),
// with s = -S (sign -1). Normal pairs are the two lanes of a pair within one vector.
LMI_AVX512 inline __m512 turnNormal(__m512 x, const float* C8, const float* S8) {
  // Each coefficient duplicated into its pair's two lanes; the sine negated for the first lane of
  // a pair and again for sign -1, so: +S first, -S second.
  const __m512i dup = _mm512_set_epi32(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0);
  const __m512 alt = _mm512_set_ps(-1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1);
  const __m512 c = _mm512_permutexvar_ps(dup, _mm512_zextps256_ps512(_mm256_loadu_ps(C8)));
  const __m512 s = _mm512_mul_ps(alt, _mm512_permutexvar_ps(dup, _mm512_zextps256_ps512(_mm256_loadu_ps(S8))));
  const __m512 partner = _mm512_permute_ps(x, 0xB1);  // swap within each pair
  return _mm512_fmadd_ps(x, c, _mm512_mul_ps(partner, s));
}

// NeoX pairs (a, b) = (dims k, k + rd/2), sixteen pairs per call: ya = a c - b s and
// yb = b c + a s with the product added by one FMA, s = -S.
LMI_AVX512 inline void turnNeoX(__m512& a, __m512& b, const float* C16, const float* S16) {
  const __m512 c = _mm512_loadu_ps(C16);
  const __m512 s = _mm512_sub_ps(_mm512_setzero_ps(), _mm512_loadu_ps(S16));
  const __m512 ya = _mm512_fnmadd_ps(b, s, _mm512_mul_ps(a, c));
  b = _mm512_fmadd_ps(a, s, _mm512_mul_ps(b, c));
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
      if (i < turned) v[i] = turnNormal(v[i], C + 8 * i, S + 8 * i);
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

// Sum of the 16 lanes of a product, folded to 8 lanes: the halves added lane by lane.
LMI_AVX512 inline __m256 fold(__m512 x) {
  return _mm256_add_ps(_mm512_castps512_ps256(x), _mm512_extractf32x8_ps(x, 1));
}

// NV: D / 16 when known at compile time (the accumulators and key vectors then stay in
// registers), 0 for any other D.
template <int R, int NV>
LMI_AVX512 void localLogitsRows(int n, const void* const* keys, KVType type, int D, int rd, RopePairing pairing,
                                const float* const* C, const float* const* S, const float* Q, int ldq, float* out,
                                int ldo) {
  const int nv = NV ? NV : D / 16;
  for (int c0 = 0; c0 < n; c0 += 4) {
    const int m = n - c0 < 4 ? n - c0 : 4;
    // Always four keys, so that the accumulators are registers: a short last group repeats its
    // first key, whose extra sums are not stored.
    int idx[4];
    for (int j = 0; j < 4; j++) idx[j] = c0 + (j < m ? j : 0);
    __m256 acc[R][4];
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
      __m512 k[NV ? NV : kMaxVec];
      loadRow<NV>(keys[idx[j]], type, nv, k);
      if (C != nullptr) turnBack<NV>(k, nv, rd, pairing, C[idx[j]], S[idx[j]]);
#pragma GCC unroll 4
      for (int r = 0; r < R; r++) {
        const float* q = Q + static_cast<int64_t>(r) * ldq;
        __m512 p = _mm512_mul_ps(_mm512_loadu_ps(q), k[0]);
#pragma GCC unroll 8
        for (int i = 1; i < nv; i++) p = _mm512_fmadd_ps(_mm512_loadu_ps(q + 16 * i), k[i], p);
        acc[r][j] = fold(p);
      }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
      const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(acc[r][0], acc[r][1]), _mm256_hadd_ps(acc[r][2], acc[r][3]));
      const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
      float* o = out + static_cast<int64_t>(r) * ldo + c0;
      if (m == 4) {
        _mm_storeu_ps(o, s4);
      } else {
        alignas(16) float t[4];
        _mm_store_ps(t, s4);
        for (int j = 0; j < m; j++) o[j] = t[j];
      }
    }
  }
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

// NeoX rotary widths that are a multiple of 16 but not of 32 (e.g. 16: Pythia-160M, StableLM-2)
// split each half across a 16-lane vector: those keys take the AVX2 version, 8 lanes wide.
const KernelOps* gAvx2 = nullptr;

LMI_AVX512 void localLogits(int R, int n, const void* const* keys, KVType type, int D, int rd, RopePairing pairing,
                            const float* const* C, const float* const* S, const float* Q, int ldq, float* out,
                            int ldo) {
  if (C != nullptr && pairing == RopePairing::NeoX && rd % 32 != 0)
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
