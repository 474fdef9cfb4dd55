// The tile-level primitives the attention driver is built on. Two implementations:
// portable C++ (kernels_portable.cpp) and AVX2/FMA/F16C (kernels_avx2.cpp), picked at
// runtime. Every primitive treats rows independently and in a fixed order, so a row's
// result never depends on which other rows share the call (runPartition relies on it).
#pragma once
#include <cstdint>

#include "lmi/attention.h"

namespace lmi::attn::detail {

struct KernelOps {
  // C[M][N] = (accumulate ? C : 0) + A[M][K] * B[K][N]; row-major, N % 8 == 0.
  // Each C element is summed over k in increasing order.
  void (*gemm)(int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc,
               bool accumulate);

  // C[M][N] = A[M][K] * B[N][K]^T (B row-major, one row per key); K % 8 == 0, N % 4 == 0.
  // Each C element is a fixed-pattern sum over k: for blocks with few rows (decode), where
  // transposing the keys would cost as much as the product.
  void (*gemmNT)(int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc);

  // dst[r][0..D) = row r of K or V (f32 or f16) for slot slots[r], KV head offset headOff
  // (elements); dst[r][D..Dp) = 0. r < n.
  void (*loadRows)(const void* base, KVType type, int64_t slotStride, int64_t headOff, const int64_t* slots,
                   int n, int D, int Dp, float* dst);

  // y = R(sign * p) x for the pair cosines C[rd/2] and sines S[rd/2] of distance p >= 0
  // (see rope_table.h); y[rd..Dp) = x[rd..Dp).
  void (*rotate)(const float* x, float* y, int rd, int Dp, RopePairing pairing, const float* C, const float* S,
                 float sign);

  // dst[c][r] = src[r][c] for r < rows, c < cols; rows and cols are multiples of 8.
  void (*transpose)(const float* src, int lds, int rows, int cols, float* dst, int ldd);

  // Online softmax step over one tile of logits S[R][N] (N % 8 == 0, -inf = masked):
  // per row, raise the running max m if needed (scaling l and O[r][0..Dp) by exp(old - new)),
  // overwrite S with exp(S - m) and add the row sum to l. Rows that are all -inf become 0.
  void (*softmaxTile)(float* S, int ldS, int R, int N, float* m, float* l, float* O, int ldO, int Dp);

  // Decode tiles whose keys are all local, fused (null on the portable path: the caller then uses
  // the primitives above). Rows are given by pointer (f32 or f16, D elements each);
  // D % 8 == 0, D <= 256, R <= 4, n <= 64, and with RoPE rd % 8 == 0 (Normal pairs) or
  // rd % 16 == 0 (NeoX pairs).
  // out[r][c] = sum_d Q[r][d] * K'_c[d] for r < R, c < n, where K'_c is key c turned by R(-p_c)
  // with rotate()'s roundings (sign -1; C == nullptr: no RoPE). C[c], S[c]: for NeoX pairs the
  // pair coefficients (rd / 2 each, as rotate() takes them); for Normal pairs the lane
  // coefficients (rd each, RopeTable::laneCoeffs), so that a turn is a multiply, a lane swap and an FMA.
  //
  // ahead: null, or n row addresses (rows of the same type and D) that the call asks the memory
  // system for as it goes through the keys (ahead[c] about when it takes key c), so that the next
  // tile's rows are on their way while this one computes. They are never read and change no
  // result; the head-dim-8 paths may ignore them.
  void (*localLogits)(int R, int n, const void* const* keys, const void* const* ahead, KVType type, int D, int rd,
                      RopePairing pairing, const float* const* C, const float* const* S, const float* Q, int ldq,
                      float* out, int ldo);
  // O[r][0..D) += sum over c < n of P[r][c] * V_c, c increasing, one FMA per term (as gemm); at
  // D 8 the AVX-512 path sums in denseTileDim8's four chains instead, so that its fused and dense
  // tiles agree bit for bit. ahead: as localLogits takes it, for value rows.
  void (*accumulateValues)(int R, int n, const void* const* values, const void* const* ahead, KVType type, int D,
                           const float* P, int ldp, float* O, int ldo);

  // A decode tile of n <= 64 local keys at head dim 8, end to end, for keys whose rows are
  // consecutive in memory (K row c at k + 8 c elements, V row c at v + 8 c) and whose positions
  // are consecutive; null where not implemented. R <= 4 rows:
  // - the query rows Q are first turned by the pair coefficients qC, qS (rotate(), sign +1; no
  //   turn when qC == nullptr);
  // - the logits are then localLogits' at D 8, bit for bit: key c turned by R(-(n - 1 - c)) from
  //   the run coefficients (RopeTable::runCoeffs; run == nullptr: no RoPE), summed over d in
  //   increasing order;
  // - then softmaxTile's step on them (m, l, O as it takes them; the same bits);
  // - then O[r] += sum over c of P[r][c] V_c in four FMA chains per row: chain t takes the keys
  //   c % 4 == t in increasing order, chain 0 starts from O[r], and O[r] = (0 + 2) + (1 + 3).
  void (*denseTileDim8)(int R, int n, const void* k, const void* v, KVType type, const float* run, const float* qC,
                        const float* qS, const float* Q, int ldq, float* m, float* l, float* O, int ldo);

  // Whether localLogits and accumulateValues take Q8_0 rows themselves (widened to f32 exactly, so
  // with the f32 rows' bits); otherwise the caller widens them into f32 rows first (loadRows).
  bool readsQ8;
};

// Asks the memory system for the cache lines of [row, row + bytes); a hint, nothing is read.
inline void prefetchRow(const void* row, int64_t bytes) {
#if defined(__GNUC__)
  const uintptr_t first = reinterpret_cast<uintptr_t>(row) & ~uintptr_t{63};
  const uintptr_t last = (reinterpret_cast<uintptr_t>(row) + static_cast<uintptr_t>(bytes) - 1) & ~uintptr_t{63};
  for (uintptr_t a = first; a <= last; a += 64) __builtin_prefetch(reinterpret_cast<const void*>(a));
#else
  (void)row, (void)bytes;
#endif
}

const KernelOps& portableOps();
// nullptr when this build or CPU has no AVX2/FMA/F16C path.
const KernelOps* avx2Ops();
// The AVX2 primitives with the AVX-512 localLogits; nullptr when this build has no such path
// (whether the CPU has AVX-512 is cpuHasAvx512()'s question).
const KernelOps* avx512Ops();

}  // namespace lmi::attn::detail
