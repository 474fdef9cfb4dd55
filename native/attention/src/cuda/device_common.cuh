// Device-only helpers shared by the kernel files: block/row decoding, key positions and
// K/V row loads, warp reductions, query preparation.
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels.cuh"

namespace lmi::attn::cuda::detail {

constexpr float kNegInf = -__builtin_huge_valf();

__device__ __forceinline__ float warpMax(float x) {
  for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
  return x;
}
__device__ __forceinline__ float warpSum(float x) {
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}

// The block's place: query tile, KV head, head chunk (see kernels.cuh).
struct BlockPos {
  int qt, g, hc;
};
__device__ __forceinline__ BlockPos blockPos(const Params& P) {
  int x = static_cast<int>(blockIdx.x);
  BlockPos b;
  b.hc = x % P.nHeadChunks;
  x /= P.nHeadChunks;
  b.g = x % P.nHeadKV;
  b.qt = x / P.nHeadKV;
  return b;
}

// Query index and head of row r; false when the row is padding.
__device__ __forceinline__ bool rowOf(const Params& P, const BlockPos& b, int r, int* qi, int* h) {
  const int qq = r / P.HB, hh = r % P.HB;
  *qi = b.qt * P.QB + qq;
  const int hl = b.hc * P.HB + hh;
  *h = b.g * P.G + hl;
  return *qi < P.nQ && hl < P.G;
}

// Loads VEC consecutive K/V elements (f32 or f16) as floats.
template <int VEC>
__device__ __forceinline__ void loadVec(const void* base, bool f16, int64_t off, float* dst) {
  if (f16) {
    const __half* p = static_cast<const __half*>(base) + off;
    if constexpr (VEC == 8) {
      const uint4 u = *reinterpret_cast<const uint4*>(p);
      const __half2* h = reinterpret_cast<const __half2*>(&u);
#pragma unroll
      for (int i = 0; i < 4; i++) {
        const float2 f = __half22float2(h[i]);
        dst[2 * i] = f.x;
        dst[2 * i + 1] = f.y;
      }
    } else if constexpr (VEC == 4) {
      const uint2 u = *reinterpret_cast<const uint2*>(p);
      const __half2* h = reinterpret_cast<const __half2*>(&u);
#pragma unroll
      for (int i = 0; i < 2; i++) {
        const float2 f = __half22float2(h[i]);
        dst[2 * i] = f.x;
        dst[2 * i + 1] = f.y;
      }
    } else if constexpr (VEC == 2) {
      const float2 f = __half22float2(*reinterpret_cast<const __half2*>(p));
      dst[0] = f.x;
      dst[1] = f.y;
    } else {
      dst[0] = __half2float(*p);
    }
  } else {
    const float* p = static_cast<const float*>(base) + off;
    if constexpr (VEC == 4) {
      const float4 f = *reinterpret_cast<const float4*>(p);
      dst[0] = f.x, dst[1] = f.y, dst[2] = f.z, dst[3] = f.w;
    } else if constexpr (VEC == 2) {
      const float2 f = *reinterpret_cast<const float2*>(p);
      dst[0] = f.x, dst[1] = f.y;
    } else {
      dst[0] = *p;
    }
  }
}

// Position of key s (kernels.cuh, Keys): slotPos[s], the query's own qPos[s - nSlot], or -1
// (empty) for s past the last key.
__device__ __forceinline__ int64_t keyPos(const Params& P, int64_t s) {
  if (s < P.nSlot) return P.slotPos[s];
  const int64_t n = s - P.nSlot;
  return n < P.nNew ? P.qPos[n] : -1;
}

// The row of key s < nSlot + nNew in R (element 0 of KV head 0).
__device__ __forceinline__ const void* keyRow(const KVRows& R, int64_t s) {
  if (s < R.nSlot) return static_cast<const char*>(R.slots) + s * R.slotPitch;
  return static_cast<const char*>(R.fresh) + (s - R.nSlot) * R.freshPitch;
}

// dst[c][0..D) (row stride lds floats) = row (key s0 + c, KV head g) of src for the kTile
// keys c whose flag is non-zero; zeros for the others. All threads of the block.
template <int VEC>
__device__ void loadTileRowsVec(float* dst, int lds, const KVRows& src, bool f16, int64_t headOff, int64_t s0,
                                const uint8_t* flag, int D) {
  const int per = D / VEC;
  for (int e = threadIdx.x; e < kTile * per; e += blockDim.x) {
    const int c = e / per, d = (e % per) * VEC;
    float x[VEC];
    if (flag[c]) {
      loadVec<VEC>(keyRow(src, s0 + c), f16, headOff + d, x);
    } else {
#pragma unroll
      for (int i = 0; i < VEC; i++) x[i] = 0.0f;
    }
#pragma unroll
    for (int i = 0; i < VEC; i++) dst[c * lds + d + i] = x[i];
  }
}

__device__ __forceinline__ void loadTileRows(float* dst, int lds, const KVRows& src, bool f16, int64_t headOff,
                                             int64_t s0, const uint8_t* flag, int D) {
  switch (src.vec) {
    case 8:
      loadTileRowsVec<8>(dst, lds, src, f16, headOff, s0, flag, D);
      break;
    case 4:
      loadTileRowsVec<4>(dst, lds, src, f16, headOff, s0, flag, D);
      break;
    case 2:
      loadTileRowsVec<2>(dst, lds, src, f16, headOff, s0, flag, D);
      break;
    default:
      loadTileRowsVec<1>(dst, lds, src, f16, headOff, s0, flag, D);
      break;
  }
}

// Element d of scale * R(dist) x for a row x in global memory (dist may be negative:
// R(-p) turns the other way). No RoPE: scale * x[d].
__device__ __forceinline__ float rotatedQueryElem(const Params& P, const float* x, int d, int64_t dist) {
  float y = x[d];
  if (P.rope && d < P.rd) {
    int k, a, b;
    pairOf(d, P.half, P.neox, &k, &a, &b);
    const int64_t p = dist < 0 ? -dist : dist;
    float c, s;
    ropeCoeff(P.table, p, k, &c, &s);
    y = rotatedElem(d, a, x[a], x[b], c, s, dist < 0 ? -1.0f : 1.0f);
  }
  return y * P.scale;
}

// The block's query positions (qpos[qq], -1 for padding) and their min / max over the
// valid ones (qmax = -1 when none). Threads [0, QB) write qpos; every thread then reads.
__device__ __forceinline__ void queryRange(const Params& P, const int64_t* qpos, int64_t* qmin, int64_t* qmax) {
  int64_t lo = INT64_MAX, hi = -1;
  for (int qq = 0; qq < P.QB; qq++) {
    const int64_t i = qpos[qq];
    if (i < 0) continue;
    lo = i < lo ? i : lo;
    hi = i > hi ? i : hi;
  }
  *qmin = lo;
  *qmax = hi;
}

// Where split blockIdx.y's tiles begin and end.
__device__ __forceinline__ void splitRange(const Params& P, int64_t* t0, int64_t* t1) {
  const int64_t s = blockIdx.y;
  *t0 = P.nTiles * s / P.nSplit;
  *t1 = P.nTiles * (s + 1) / P.nSplit;
}

}  // namespace lmi::attn::cuda::detail
