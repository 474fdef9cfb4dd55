// The tensor-core prefill kernel for f16 K/V (headDim <= 128): 64 rows (query, head) per
// block, 4 warps of 16 rows, key tiles of kTile = 32 keys, mma.sync m16n8k16 (f16 in,
// f32 accumulate), online softmax in registers (FlashAttention-2 style).
//
// Accuracy. Queries (f32) and rotated keys are split into f16 hi + lo parts and
// S = Qh Kh + Ql Kh + Qh Kl (the dropped Ql Kl is ~2^-22 relative); probabilities are
// split likewise, O += Ph V + Pl V (V is exact: it is f16 in memory). The result is close
// to f32 arithmetic, at 2.5x the tensor work of a plain f16 kernel. Inputs whose rotated
// magnitude exceeds the f16 range (65504) would overflow: not expected of a model's q/k.
//
// Fragment layouts of m16n8k16 (g = lane / 4, t = lane % 4):
//   A (16x16, row-major): a0 = (g, 2t..2t+1), a1 = (g+8, 2t..), a2 = (g, 2t+8..), a3 = (g+8, 2t+8..)
//   B (16x8,  [k][n]):    b0 = (k 2t..2t+1, n g), b1 = (k 2t+8..2t+9, n g)
//   C (16x8):             c0,c1 = (g, 2t..2t+1), c2,c3 = (g+8, 2t..2t+1)
// Two adjacent C tiles of S are exactly one A tile of P, so P never leaves registers.
#include <cuda_fp16.h>

#include "device_common.cuh"

namespace lmi::attn::cuda::detail {
namespace {

__host__ __device__ inline size_t align16m(size_t x) { return (x + 15) & ~size_t(15); }

__host__ __device__ inline int mmaDp(int D) { return D <= 64 ? 64 : 128; }

struct MmaLayout {
  int DP, DpS;
  size_t qh, ql, kraw, kh, kl, v, rowSlope, rowGBias, rowValid, sPos, qpos, cls, flag, total;
};

__host__ __device__ inline MmaLayout mmaLayout(const Params& P) {
  MmaLayout L;
  L.DP = mmaDp(P.D);
  L.DpS = L.DP + 8;  // row stride in halves: 16B-aligned rows, conflict-free fragment loads
  size_t o = 0;
  auto take = [&](size_t bytes) {
    const size_t at = o;
    o = align16m(o + bytes);
    return at;
  };
  const size_t qBytes = sizeof(__half) * kMmaRows * L.DpS;
  const size_t kBytes = sizeof(__half) * kTile * L.DpS;
  L.qh = take(qBytes);
  L.ql = take(qBytes);
  L.kraw = take(kBytes);
  L.kh = take(kBytes);
  L.kl = take(kBytes);
  L.v = take(kBytes);
  L.rowSlope = take(sizeof(float) * kMmaRows);
  L.rowGBias = take(sizeof(float) * kMmaRows);
  L.rowValid = take(sizeof(int) * kMmaRows);
  L.sPos = take(sizeof(int64_t) * kTile);
  L.qpos = take(sizeof(int64_t) * P.QB);
  L.cls = take(sizeof(uint8_t) * P.QB * kTile);
  L.flag = take(sizeof(uint8_t) * kTile);
  L.total = o;
  return L;
}

__device__ __forceinline__ void mma16816(float* c, const uint32_t* a, uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t packHalf2(__half lo, __half hi) {
  const __half2 h = __halves2half2(lo, hi);  // lo in the low 16 bits: the smaller index
  return *reinterpret_cast<const uint32_t*>(&h);
}

__device__ __forceinline__ uint32_t ld32(const __half* p) { return *reinterpret_cast<const uint32_t*>(p); }

// Splits x0, x1 into f16 hi and lo parts, packed as (x0, x1) pairs.
__device__ __forceinline__ void splitPack(float x0, float x1, uint32_t* hi, uint32_t* lo) {
  const __half h0 = __float2half_rn(x0), h1 = __float2half_rn(x1);
  *hi = packHalf2(h0, h1);
  *lo = packHalf2(__float2half_rn(x0 - __half2float(h0)), __float2half_rn(x1 - __half2float(h1)));
}

// dst[c][0..D) = row (key s0 + c, head offset headOff) of the f16 src for flagged keys,
// zeros for the others. Columns >= D are left alone (zeroed once at kernel start).
template <int VEC>
__device__ void loadTileHalfVec(__half* dst, int lds, const KVRows& src, int64_t headOff, int64_t s0,
                                const uint8_t* flag, int D) {
  const int per = D / VEC;
  for (int e = threadIdx.x; e < kTile * per; e += blockDim.x) {
    const int c = e / per, d = (e % per) * VEC;
    __half* o = dst + c * lds + d;
    const __half* in = flag[c] ? static_cast<const __half*>(keyRow(src, s0 + c)) + headOff + d : nullptr;
    if constexpr (VEC == 8) {
      uint4 u = make_uint4(0, 0, 0, 0);
      if (in) u = *reinterpret_cast<const uint4*>(in);
      *reinterpret_cast<uint4*>(o) = u;
    } else if constexpr (VEC == 4) {
      uint2 u = make_uint2(0, 0);
      if (in) u = *reinterpret_cast<const uint2*>(in);
      *reinterpret_cast<uint2*>(o) = u;
    } else if constexpr (VEC == 2) {
      uint32_t u = 0;
      if (in) u = *reinterpret_cast<const uint32_t*>(in);
      *reinterpret_cast<uint32_t*>(o) = u;
    } else {
      *o = in ? *in : __float2half_rn(0.0f);
    }
  }
}

__device__ __forceinline__ void loadTileHalf(__half* dst, int lds, const KVRows& src, int64_t headOff, int64_t s0,
                                             const uint8_t* flag, int D) {
  switch (src.vec) {
    case 8:
      loadTileHalfVec<8>(dst, lds, src, headOff, s0, flag, D);
      break;
    case 4:
      loadTileHalfVec<4>(dst, lds, src, headOff, s0, flag, D);
      break;
    case 2:
      loadTileHalfVec<2>(dst, lds, src, headOff, s0, flag, D);
      break;
    default:
      loadTileHalfVec<1>(dst, lds, src, headOff, s0, flag, D);
      break;
  }
}

// The global-branch logit <scale * R(L) q, k> + bias for one (row, key), on CUDA cores:
// global keys are few (nGlobal), so this stays off the tensor path.
__device__ float globalLogit(const Params& P, const float* x, const __half* krow, int64_t Ldist, float bias) {
  float dot = 0.0f;
  for (int d = 0; d < P.D; d++) dot = fmaf(rotatedQueryElem(P, x, d, Ldist), __half2float(krow[d]), dot);
  return dot + bias;
}

template <int DP>
__global__ void __launch_bounds__(kThreads) mmaKernel(const Params P) {
  extern __shared__ __align__(16) unsigned char smem[];
  const MmaLayout L = mmaLayout(P);
  constexpr int kNT = kTile / 8;  // n-tiles of S per warp
  constexpr int kDT = DP / 8;     // n-tiles of O per warp
  const int DpS = L.DpS, D = P.D;
  __half* sQh = reinterpret_cast<__half*>(smem + L.qh);  // [64][DpS]
  __half* sQl = reinterpret_cast<__half*>(smem + L.ql);
  __half* sKraw = reinterpret_cast<__half*>(smem + L.kraw);  // [kTile][DpS] keys as stored
  __half* sKh = reinterpret_cast<__half*>(smem + L.kh);      // rotated keys, hi / lo
  __half* sKl = reinterpret_cast<__half*>(smem + L.kl);
  __half* sV = reinterpret_cast<__half*>(smem + L.v);
  float* rowSlope = reinterpret_cast<float*>(smem + L.rowSlope);
  float* rowGBias = reinterpret_cast<float*>(smem + L.rowGBias);
  int* rowValid = reinterpret_cast<int*>(smem + L.rowValid);
  int64_t* sPos = reinterpret_cast<int64_t*>(smem + L.sPos);
  int64_t* qpos = reinterpret_cast<int64_t*>(smem + L.qpos);
  uint8_t* cls = smem + L.cls;
  uint8_t* flag = smem + L.flag;

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int g8 = lane >> 2, t4 = lane & 3;
  const BlockPos bp = blockPos(P);
  const LambdaMask& mk = P.mask;

  // Zero the key/value buffers once: padding columns [D, DP) stay zero for the whole run.
  {
    uint32_t* z = reinterpret_cast<uint32_t*>(smem + L.kraw);
    const int words = static_cast<int>((L.rowSlope - L.kraw) / 4);
    for (int e = tid; e < words; e += kThreads) z[e] = 0u;
  }
  if (tid < P.QB) {
    const int qi = bp.qt * P.QB + tid;
    qpos[tid] = qi < P.nQ ? P.qPos[qi] : -1;
  }
  for (int r = tid; r < kMmaRows; r += kThreads) {
    int qi, h;
    const bool ok = r < P.QB * P.HB && rowOf(P, bp, r, &qi, &h);
    rowValid[r] = ok;
    const float slope = (ok && P.alibi) ? P.slopes[h] : 0.0f;
    rowSlope[r] = slope;
    rowGBias[r] = (ok && P.alibi) ? alibiBias(slope, globalDistance(P.qPos[qi], mk)) : 0.0f;
  }
  __syncthreads();
  int64_t qmin, qmax;
  queryRange(P, qpos, &qmin, &qmax);
  const int64_t r0 = qmax;
  for (int e = tid; e < kMmaRows * DP; e += kThreads) {
    const int r = e / DP, d = e % DP;
    int qi, h;
    float y = 0.0f;
    if (d < D && rowValid[r] && rowOf(P, bp, r, &qi, &h)) {
      const float* x = P.q + (static_cast<int64_t>(qi) * P.nHead + h) * D;
      y = rotatedQueryElem(P, x, d, P.qPos[qi] - r0);
    }
    const __half hi = __float2half_rn(y);
    sQh[r * DpS + d] = hi;
    sQl[r * DpS + d] = __float2half_rn(y - __half2float(hi));
  }

  // Per lane: rows rA = 16 warp + g8 and rB = rA + 8.
  const int rA = warp * 16 + g8, rB = rA + 8;
  float m[2] = {kNegInf, kNegInf}, l[2] = {0.0f, 0.0f};
  float o[kDT][4];
#pragma unroll
  for (int n = 0; n < kDT; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;

  const int64_t headOff = static_cast<int64_t>(bp.g) * D;
  const __half* kB = P.rope ? sKh : sKraw;  // B operand of the local logits
  int64_t t0, t1;
  splitRange(P, &t0, &t1);
  for (int64_t t = t0; t < t1; t++) {
    if (P.tileMin && tileMasked(qmin, qmax, P.tileMin[t], P.tileMax[t], mk)) continue;  // uniform
    __syncthreads();
    const int64_t s0 = t * kTile;
    if (tid < kTile) {
      const int64_t j = keyPos(P, s0 + tid);
      sPos[tid] = j;
      flag[tid] = static_cast<uint8_t>(classifySlot(qpos, P.QB, j, mk, cls + tid, kTile));
    }
    const int anyHere = __syncthreads_or(tid < kTile && flag[tid] != 0);
    const int localHere = __syncthreads_or(tid < kTile && (flag[tid] & 1));
    if (!anyHere) continue;

    loadTileHalf(sKraw, DpS, P.k, headOff, s0, flag, D);
    loadTileHalf(sV, DpS, P.v, headOff, s0, flag, D);
    __syncthreads();
    if (P.rope && localHere) {
      for (int e = tid; e < kTile * D; e += kThreads) {
        const int c = e / D, d = e % D;
        float y = 0.0f;
        if (flag[c] & 1) {
          const __half* x = sKraw + c * DpS;
          y = __half2float(x[d]);
          if (d < P.rd) {
            int k, a, b;
            pairOf(d, P.half, P.neox, &k, &a, &b);
            float cs, sn;
            ropeCoeff(P.table, r0 - sPos[c], k, &cs, &sn);
            y = rotatedElem(d, a, __half2float(x[a]), __half2float(x[b]), cs, sn, -1.0f);
          }
        }
        const __half hi = __float2half_rn(y);
        sKh[c * DpS + d] = hi;
        sKl[c * DpS + d] = __float2half_rn(y - __half2float(hi));
      }
      __syncthreads();
    }

    // S = Q K^T for this warp's 16 rows x kTile keys (only the local entries use it).
    float s[kNT][4];
#pragma unroll
    for (int n = 0; n < kNT; n++) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < DP / 16; kk++) {
      if (!localHere) break;
      const int col = kk * 16 + 2 * t4;
      uint32_t ah[4], al[4];
      ah[0] = ld32(sQh + rA * DpS + col);
      ah[1] = ld32(sQh + rB * DpS + col);
      ah[2] = ld32(sQh + rA * DpS + col + 8);
      ah[3] = ld32(sQh + rB * DpS + col + 8);
      al[0] = ld32(sQl + rA * DpS + col);
      al[1] = ld32(sQl + rB * DpS + col);
      al[2] = ld32(sQl + rA * DpS + col + 8);
      al[3] = ld32(sQl + rB * DpS + col + 8);
#pragma unroll
      for (int n = 0; n < kNT; n++) {
        const int key = n * 8 + g8;
        const uint32_t b0 = ld32(kB + key * DpS + col), b1 = ld32(kB + key * DpS + col + 8);
        mma16816(s[n], ah, b0, b1);
        mma16816(s[n], al, b0, b1);
        if (P.rope) mma16816(s[n], ah, ld32(sKl + key * DpS + col), ld32(sKl + key * DpS + col + 8));
      }
    }

    // Mask, bias, global logits; the online-softmax step per row.
    float tmax[2] = {kNegInf, kNegInf};
#pragma unroll
    for (int n = 0; n < kNT; n++) {
#pragma unroll
      for (int e = 0; e < 4; e++) {
        const int r = e < 2 ? rA : rB;
        const int c = n * 8 + 2 * t4 + (e & 1);
        const int br = rowValid[r] ? cls[(r / P.HB) * kTile + c] : kMasked;
        float x = kNegInf;
        if (br == kLocal) {
          x = P.alibi ? s[n][e] + alibiBias(rowSlope[r], qpos[r / P.HB] - sPos[c]) : s[n][e];
        } else if (br == kGlobal) {
          int qi, h;
          rowOf(P, bp, r, &qi, &h);
          const float* xq = P.q + (static_cast<int64_t>(qi) * P.nHead + h) * D;
          x = globalLogit(P, xq, sKraw + c * DpS, globalDistance(P.qPos[qi], mk), rowGBias[r]);
        }
        s[n][e] = x;
        tmax[e >> 1] = fmaxf(tmax[e >> 1], x);
      }
    }
    float alpha[2];
#pragma unroll
    for (int x = 0; x < 2; x++) {
      tmax[x] = fmaxf(tmax[x], __shfl_xor_sync(0xffffffffu, tmax[x], 1));
      tmax[x] = fmaxf(tmax[x], __shfl_xor_sync(0xffffffffu, tmax[x], 2));
      const float mNew = fmaxf(m[x], tmax[x]);
      alpha[x] = rescale(m[x], mNew);
      m[x] = mNew;
      l[x] *= alpha[x];
    }
#pragma unroll
    for (int n = 0; n < kNT; n++) {
#pragma unroll
      for (int e = 0; e < 4; e++) {
        const float p = weight(s[n][e], m[e >> 1]);
        s[n][e] = p;
        l[e >> 1] += p;
      }
    }
#pragma unroll
    for (int n = 0; n < kDT; n++) {
      o[n][0] *= alpha[0];
      o[n][1] *= alpha[0];
      o[n][2] *= alpha[1];
      o[n][3] *= alpha[1];
    }

    // O += P V, P split into hi + lo.
#pragma unroll
    for (int kk = 0; kk < kTile / 16; kk++) {
      uint32_t ph[4], pl[4];
      splitPack(s[2 * kk][0], s[2 * kk][1], &ph[0], &pl[0]);
      splitPack(s[2 * kk][2], s[2 * kk][3], &ph[1], &pl[1]);
      splitPack(s[2 * kk + 1][0], s[2 * kk + 1][1], &ph[2], &pl[2]);
      splitPack(s[2 * kk + 1][2], s[2 * kk + 1][3], &ph[3], &pl[3]);
      const int k0 = kk * 16 + 2 * t4;
#pragma unroll
      for (int n = 0; n < kDT; n++) {
        const int col = n * 8 + g8;
        const uint32_t b0 = packHalf2(sV[k0 * DpS + col], sV[(k0 + 1) * DpS + col]);
        const uint32_t b1 = packHalf2(sV[(k0 + 8) * DpS + col], sV[(k0 + 9) * DpS + col]);
        mma16816(o[n], ph, b0, b1);
        mma16816(o[n], pl, b0, b1);
      }
    }
  }

  // l: each lane summed its own columns; the quad holds the row.
#pragma unroll
  for (int x = 0; x < 2; x++) {
    l[x] += __shfl_xor_sync(0xffffffffu, l[x], 1);
    l[x] += __shfl_xor_sync(0xffffffffu, l[x], 2);
  }
#pragma unroll
  for (int x = 0; x < 2; x++) {
    const int r = x == 0 ? rA : rB;
    int qi, h;
    if (!rowValid[r] || !rowOf(P, bp, r, &qi, &h)) continue;
    const int64_t row = static_cast<int64_t>(qi) * P.nHead + h;
#pragma unroll
    for (int n = 0; n < kDT; n++) {
#pragma unroll
      for (int e = 0; e < 2; e++) {
        const int d = n * 8 + 2 * t4 + e;
        if (d >= D) continue;
        const float a = o[n][2 * x + e];
        if (P.nParts == 1)
          P.out[row * D + d] = finishValue(a, m[x], l[x]);
        else
          P.partAcc[(row * P.nParts + blockIdx.y) * D + d] = a;
      }
    }
    if (P.nParts > 1 && t4 == 0) {
      P.partML[(row * P.nParts + blockIdx.y) * 2] = m[x];
      P.partML[(row * P.nParts + blockIdx.y) * 2 + 1] = l[x];
    }
  }
}

}  // namespace

size_t mmaSmemBytes(const Params& P) { return mmaLayout(P).total; }

const void* mmaKernelPtr(int D) {
  return mmaDp(D) == 64 ? reinterpret_cast<const void*>(&mmaKernel<64>) : reinterpret_cast<const void*>(&mmaKernel<128>);
}

void launchMma(const Params& P, dim3 grid, size_t smem, cudaStream_t st) {
  if (mmaDp(P.D) == 64)
    mmaKernel<64><<<grid, kThreads, smem, st>>>(P);
  else
    mmaKernel<128><<<grid, kThreads, smem, st>>>(P);
}

}  // namespace lmi::attn::cuda::detail
