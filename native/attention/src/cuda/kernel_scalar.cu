// The CUDA-core kernel: decode (one query per block row group, split-K over the keys,
// "flash-decoding") and the f32-K/V prefill. Up to 16 rows (query, head) per block share
// every loaded key/value tile; 128 threads; tiles of kTile = 32 keys.
//
// Per tile: key positions -> per (query, key) branch (cls) and per-key flag (any kept
// row) -> flagged keys into smem (f32) -> local keys rotated by R(j - r0) ->
// logits S[r][c] -> one warp per row: online-softmax step (m, l, alpha), p = exp(S - m)
// -> values of flagged keys into smem -> acc[r][d] = alpha * acc + sum_c p * v.
// Keys that no row keeps are zero rows, so 0 * (stale smem) never makes a NaN.
#include <cuda_fp16.h>

#include "device_common.cuh"

namespace lmi::attn::cuda::detail {
namespace {

// Shared-memory layout (offsets in bytes), the same on host and device.
struct ScalarLayout {
  int R, Ds;
  size_t qloc, qglob, kraw, kr, S, rowM, rowL, rowAlpha, rowSlope, rowGBias, rowValid, sPos, qpos, cls, flag, total;
};

__host__ __device__ inline size_t align16(size_t x) { return (x + 15) & ~size_t(15); }

__host__ __device__ inline ScalarLayout scalarLayout(const Params& P) {
  ScalarLayout L;
  L.R = P.QB * P.HB;
  L.Ds = P.D | 1;  // odd row stride: conflict-free column reads across slots
  size_t o = 0;
  auto take = [&](size_t bytes) {
    const size_t at = o;
    o = align16(o + bytes);
    return at;
  };
  L.qloc = take(sizeof(float) * L.R * P.D);
  L.qglob = take(sizeof(float) * L.R * P.D);
  L.kraw = take(sizeof(float) * kTile * L.Ds);
  L.kr = take(sizeof(float) * kTile * L.Ds);
  L.S = take(sizeof(float) * L.R * kTile);
  L.rowM = take(sizeof(float) * L.R);
  L.rowL = take(sizeof(float) * L.R);
  L.rowAlpha = take(sizeof(float) * L.R);
  L.rowSlope = take(sizeof(float) * L.R);
  L.rowGBias = take(sizeof(float) * L.R);
  L.rowValid = take(sizeof(int) * L.R);
  L.sPos = take(sizeof(int64_t) * kTile);
  L.qpos = take(sizeof(int64_t) * P.QB);
  L.cls = take(sizeof(uint8_t) * P.QB * kTile);
  L.flag = take(sizeof(uint8_t) * kTile);
  L.total = o;
  return L;
}

static_assert(kTile == 32, "the softmax step gives one slot to each lane of a warp");
constexpr int kMaxAcc = (kScalarRowsMax * 128) / kThreads;  // R * D <= 2048 (host guarantees)

__global__ void __launch_bounds__(kThreads) scalarKernel(const Params P) {
  extern __shared__ __align__(16) unsigned char smem[];
  const ScalarLayout L = scalarLayout(P);
  const int R = L.R, D = P.D, Ds = L.Ds;
  float* qloc = reinterpret_cast<float*>(smem + L.qloc);    // [R][D]  scale * R(i - r0) q
  float* qglob = reinterpret_cast<float*>(smem + L.qglob);  // [R][D]  scale * R(L) q
  float* kraw = reinterpret_cast<float*>(smem + L.kraw);    // [kTile][Ds] keys as stored
  float* kr = reinterpret_cast<float*>(smem + L.kr);        // [kTile][Ds] rotated keys, then values
  float* S = reinterpret_cast<float*>(smem + L.S);          // [R][kTile] logits, then p
  float* rowM = reinterpret_cast<float*>(smem + L.rowM);
  float* rowL = reinterpret_cast<float*>(smem + L.rowL);
  float* rowAlpha = reinterpret_cast<float*>(smem + L.rowAlpha);
  float* rowSlope = reinterpret_cast<float*>(smem + L.rowSlope);
  float* rowGBias = reinterpret_cast<float*>(smem + L.rowGBias);
  int* rowValid = reinterpret_cast<int*>(smem + L.rowValid);
  int64_t* sPos = reinterpret_cast<int64_t*>(smem + L.sPos);  // [kTile]
  int64_t* qpos = reinterpret_cast<int64_t*>(smem + L.qpos);  // [QB], -1 = padding
  uint8_t* cls = smem + L.cls;                                 // [QB][kTile]
  uint8_t* flag = smem + L.flag;                               // [kTile]: bit 1 local, bit 2 global

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const BlockPos bp = blockPos(P);
  const LambdaMask& mk = P.mask;

  if (tid < P.QB) {
    const int qi = bp.qt * P.QB + tid;
    qpos[tid] = qi < P.nQ ? P.qPos[qi] : -1;
  }
  for (int r = tid; r < R; r += kThreads) {
    int qi, h;
    const bool ok = rowOf(P, bp, r, &qi, &h);
    rowValid[r] = ok;
    rowM[r] = kNegInf;
    rowL[r] = 0.0f;
    rowAlpha[r] = 1.0f;
    const float slope = (ok && P.alibi) ? P.slopes[h] : 0.0f;
    rowSlope[r] = slope;
    rowGBias[r] = (ok && P.alibi) ? alibiBias(slope, globalDistance(P.qPos[qi], mk)) : 0.0f;
  }
  __syncthreads();
  int64_t qmin, qmax;
  queryRange(P, qpos, &qmin, &qmax);
  const int64_t r0 = qmax;  // RoPE reference position
  for (int e = tid; e < R * D; e += kThreads) {
    const int r = e / D, d = e % D;
    int qi, h;
    float yl = 0.0f, yg = 0.0f;
    if (rowOf(P, bp, r, &qi, &h)) {
      const float* x = P.q + (static_cast<int64_t>(qi) * P.nHead + h) * D;
      const int64_t i = P.qPos[qi];
      yl = rotatedQueryElem(P, x, d, i - r0);
      yg = rotatedQueryElem(P, x, d, globalDistance(i, mk));
    }
    qloc[e] = yl;
    qglob[e] = yg;
  }

  float acc[kMaxAcc];
#pragma unroll
  for (int u = 0; u < kMaxAcc; u++) acc[u] = 0.0f;

  const int64_t headOff = static_cast<int64_t>(bp.g) * D;
  const float* kLoc = P.rope ? kr : kraw;
  int64_t t0, t1;
  splitRange(P, &t0, &t1);
  for (int64_t t = t0; t < t1; t++) {
    if (P.tileMin && tileMasked(qmin, qmax, P.tileMin[t], P.tileMax[t], mk)) continue;  // uniform
    __syncthreads();  // the previous tile's readers are done with smem
    const int64_t s0 = t * kTile;
    if (tid < kTile) {
      const int64_t j = keyPos(P, s0 + tid);
      sPos[tid] = j;
      flag[tid] = static_cast<uint8_t>(classifySlot(qpos, P.QB, j, mk, cls + tid, kTile));
    }
    const int localHere = __syncthreads_or(tid < kTile && (flag[tid] & 1));
    const int globalHere = __syncthreads_or(tid < kTile && (flag[tid] & 2));
    if (!localHere && !globalHere) continue;  // uniform: every thread got the same answers

    loadTileRows(kraw, Ds, P.k, P.f16, headOff, s0, flag, D);
    __syncthreads();
    if (P.rope && localHere) {
      for (int e = tid; e < kTile * D; e += kThreads) {
        const int c = e / D, d = e % D;
        float y = 0.0f;
        if (flag[c] & 1) {
          const float* x = kraw + c * Ds;
          y = x[d];
          if (d < P.rd) {
            int k, a, b;
            pairOf(d, P.half, P.neox, &k, &a, &b);
            float cs, sn;
            ropeCoeff(P.table, r0 - sPos[c], k, &cs, &sn);  // R(j - r0) = R(-(r0 - j)), r0 >= j
            y = rotatedElem(d, a, x[a], x[b], cs, sn, -1.0f);
          }
        }
        kr[c * Ds + d] = y;
      }
      __syncthreads();
    }

    for (int e = tid; e < R * kTile; e += kThreads) {
      const int r = e / kTile, c = e % kTile;
      const int qq = r / P.HB;
      const int br = rowValid[r] ? cls[qq * kTile + c] : kMasked;
      float s = kNegInf;
      if (br == kLocal) {
        const float* qv = qloc + r * D;
        const float* kv = kLoc + c * Ds;
        float dot = 0.0f;
        for (int d = 0; d < D; d++) dot = fmaf(qv[d], kv[d], dot);
        s = P.alibi ? dot + alibiBias(rowSlope[r], qpos[qq] - sPos[c]) : dot;
      } else if (br == kGlobal) {
        const float* qv = qglob + r * D;
        const float* kv = kraw + c * Ds;
        float dot = 0.0f;
        for (int d = 0; d < D; d++) dot = fmaf(qv[d], kv[d], dot);
        s = dot + rowGBias[r];
      }
      S[e] = s;
    }
    __syncthreads();

    // One warp per row: the online-softmax step. kTile == 32: one logit per lane.
    for (int r = warp; r < R; r += kThreads / 32) {
      const float s = S[r * kTile + lane];
      const float mOld = rowM[r];
      const float mNew = fmaxf(mOld, warpMax(s));
      const float alpha = rescale(mOld, mNew);
      const float p = weight(s, mNew);
      const float sum = warpSum(p);
      S[r * kTile + lane] = p;
      if (lane == 0) {
        rowM[r] = mNew;
        rowL[r] = rowL[r] * alpha + sum;
        rowAlpha[r] = alpha;
      }
    }
    // Values into kr (its key readers finished at the barrier above).
    loadTileRows(kr, Ds, P.v, P.f16, headOff, s0, flag, D);
    __syncthreads();

#pragma unroll
    for (int u = 0; u < kMaxAcc; u++) {
      const int idx = tid + u * kThreads;
      if (idx < R * D) {
        const int r = idx / D, d = idx % D;
        const float* p = S + r * kTile;
        float a = acc[u] * rowAlpha[r];
        for (int c = 0; c < kTile; c++) a = fmaf(p[c], kr[c * Ds + d], a);
        acc[u] = a;
      }
    }
  }
  __syncthreads();

  // Output: final values, or this split's partial state.
#pragma unroll
  for (int u = 0; u < kMaxAcc; u++) {
    const int idx = tid + u * kThreads;
    if (idx < R * D) {
      const int r = idx / D, d = idx % D;
      int qi, h;
      if (rowOf(P, bp, r, &qi, &h)) {
        const int64_t row = static_cast<int64_t>(qi) * P.nHead + h;
        if (P.nParts == 1)
          P.out[row * D + d] = finishValue(acc[u], rowM[r], rowL[r]);
        else
          P.partAcc[(row * P.nParts + blockIdx.y) * D + d] = acc[u];
      }
    }
  }
  if (P.nParts > 1) {
    for (int r = tid; r < R; r += kThreads) {
      int qi, h;
      if (rowOf(P, bp, r, &qi, &h)) {
        const int64_t row = static_cast<int64_t>(qi) * P.nHead + h;
        P.partML[(row * P.nParts + blockIdx.y) * 2] = rowM[r];
        P.partML[(row * P.nParts + blockIdx.y) * 2 + 1] = rowL[r];
      }
    }
  }
}

}  // namespace

size_t scalarSmemBytes(const Params& P) { return scalarLayout(P).total; }

const void* scalarKernelPtr() { return reinterpret_cast<const void*>(&scalarKernel); }

void launchScalar(const Params& P, dim3 grid, size_t smem, cudaStream_t st) {
  scalarKernel<<<grid, kThreads, smem, st>>>(P);
}

}  // namespace lmi::attn::cuda::detail
