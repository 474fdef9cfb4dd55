// The small kernels around the main ones: the per-tile position range (tile skipping),
// top-k middle attention (its own slower path), and the combine of partial states.
#include <cuda_fp16.h>

#include "device_common.cuh"

namespace lmi::attn::cuda::detail {
namespace {

// tileMin[t], tileMax[t] = min / max non-empty key position in keys [32t, 32t + 32);
// INT64_MAX / -1 for a tile without any. One warp per tile.
__global__ void tileRangeKernel(const Params P, int64_t* tileMin, int64_t* tileMax) {
  static_assert(kTile == 32, "one lane per key of a tile");
  const int64_t t = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x & 31;
  if (t >= P.nTiles) return;  // whole warps leave together (blockDim is a multiple of 32)
  const int64_t j = keyPos(P, t * kTile + lane);
  long long lo = j >= 0 ? j : INT64_MAX, hi = j;
  for (int o = 16; o > 0; o >>= 1) {
    const long long a = __shfl_xor_sync(0xffffffffu, lo, o), b = __shfl_xor_sync(0xffffffffu, hi, o);
    lo = a < lo ? a : lo;
    hi = b > hi ? b : hi;
  }
  if (lane == 0) {
    tileMin[t] = lo;
    tileMax[t] = hi;
  }
}

struct TopKLayout {
  size_t qm, lists, fin, counts, total;
};
__host__ __device__ inline TopKLayout topKLayout(const Params& P) {
  TopKLayout L;
  auto al = [](size_t x) { return (x + 15) & ~size_t(15); };
  const size_t k = P.topK > 0 ? static_cast<size_t>(P.topK) : 1;
  L.qm = 0;
  L.lists = al(sizeof(float) * P.D);
  L.fin = al(L.lists + sizeof(TopCand) * k * (kTopKThreads / 32));
  L.counts = al(L.fin + sizeof(TopCand) * k);
  L.total = al(L.counts + sizeof(int) * (kTopKThreads / 32 + 1));
  return L;
}

// One block per row (query, head): every middle key's logit <scale R(insertAt) q, k> + bias
// (one warp per key), the k best per warp (sorted insertion, the CPU's order), merged by
// one thread; then this part's softmax state over the chosen keys, at part index nSplit.
__global__ void __launch_bounds__(kTopKThreads) topKKernel(const Params P) {
  extern __shared__ __align__(16) unsigned char smem[];
  const TopKLayout L = topKLayout(P);
  float* qm = reinterpret_cast<float*>(smem + L.qm);
  TopCand* lists = reinterpret_cast<TopCand*>(smem + L.lists);  // [8][k]
  TopCand* fin = reinterpret_cast<TopCand*>(smem + L.fin);      // [k]
  int* counts = reinterpret_cast<int*>(smem + L.counts);        // [8] + final
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  constexpr int kWarps = kTopKThreads / 32;
  const int k = P.topK;

  const int64_t row = blockIdx.x;
  const int qi = static_cast<int>(row / P.nHead), h = static_cast<int>(row % P.nHead);
  const int g = h / P.G;
  const int64_t i = P.qPos[qi];
  const float* x = P.q + row * P.D;
  for (int d = tid; d < P.D; d += kTopKThreads) qm[d] = rotatedQueryElem(P, x, d, P.insertAt);
  const float bias = P.alibi ? alibiBias(P.slopes[h], P.insertAt) : 0.0f;
  __syncthreads();

  TopCand* mine = lists + warp * k;
  int cnt = 0;  // meaningful in lane 0
  const int64_t headOff = static_cast<int64_t>(g) * P.D;
  for (int64_t s = warp; s < P.nSlot + P.nNew; s += kWarps) {
    const int64_t j = keyPos(P, s);
    if (branchOf(i, j, P.mask) != kMiddle) continue;  // the same j for the whole warp
    float dot = 0.0f;
    const void* krow = keyRow(P.k, s);
    for (int d = lane; d < P.D; d += 32) {
      float kv;
      loadVec<1>(krow, P.f16, headOff + d, &kv);
      dot = fmaf(qm[d], kv, dot);
    }
    const float v = warpSum(dot) + bias;
    if (lane == 0) cnt = topInsert(mine, cnt, k, TopCand{v, j, s});
  }
  if (lane == 0) counts[warp] = cnt;
  __syncthreads();
  if (tid == 0) {
    int at[kWarps];
    for (int w = 0; w < kWarps; w++) at[w] = 0;
    int n = 0;
    while (n < k) {
      int best = -1;
      for (int w = 0; w < kWarps; w++) {
        if (at[w] >= counts[w]) continue;
        if (best < 0 || betterTop(lists[w * k + at[w]], lists[best * k + at[best]])) best = w;
      }
      if (best < 0) break;
      fin[n++] = lists[best * k + at[best]];
      at[best]++;
    }
    counts[kWarps] = n;
  }
  __syncthreads();
  const int n = counts[kWarps];
  const float M = n > 0 ? fin[0].v : kNegInf;  // fin is sorted, largest first
  float* accOut = P.partAcc + (row * P.nParts + P.nSplit) * P.D;
  for (int d = tid; d < P.D; d += kTopKThreads) {
    float a = 0.0f;
    for (int e = 0; e < n; e++) {
      float vv;
      loadVec<1>(keyRow(P.v, fin[e].slot), P.f16, headOff + d, &vv);
      a = fmaf(weight(fin[e].v, M), vv, a);
    }
    accOut[d] = a;
  }
  if (tid == 0) {
    float l = 0.0f;
    for (int e = 0; e < n; e++) l += weight(fin[e].v, M);
    P.partML[(row * P.nParts + P.nSplit) * 2] = M;
    P.partML[(row * P.nParts + P.nSplit) * 2 + 1] = l;
  }
}

// One block per row: merge the nParts partial states and write O / l (zeros when empty).
__global__ void __launch_bounds__(kCombineThreads) combineKernel(const Params P) {
  const int64_t row = blockIdx.x;
  const float* ml = P.partML + row * P.nParts * 2;
  float M = kNegInf;
  for (int s = 0; s < P.nParts; s++) M = fmaxf(M, ml[2 * s]);
  float l = 0.0f;
  for (int s = 0; s < P.nParts; s++) l += rescale(ml[2 * s], M) * ml[2 * s + 1];
  const float* acc = P.partAcc + row * P.nParts * P.D;
  for (int d = threadIdx.x; d < P.D; d += kCombineThreads) {
    float a = 0.0f;
    for (int s = 0; s < P.nParts; s++) {
      const float w = rescale(ml[2 * s], M);
      if (w != 0.0f) a = fmaf(w, acc[static_cast<int64_t>(s) * P.D + d], a);
    }
    P.out[row * P.D + d] = finishValue(a, M, l);
  }
}

}  // namespace

size_t topKSmemBytes(const Params& P) { return topKLayout(P).total; }

const void* topKKernelPtr() { return reinterpret_cast<const void*>(&topKKernel); }

void launchTileRange(const Params& P, int64_t* tileMin, int64_t* tileMax, cudaStream_t st) {
  constexpr int kBlock = 256;
  const int64_t threads = P.nTiles * 32;
  const unsigned blocks = static_cast<unsigned>((threads + kBlock - 1) / kBlock);
  tileRangeKernel<<<blocks, kBlock, 0, st>>>(P, tileMin, tileMax);
}

void launchTopK(const Params& P, size_t smem, cudaStream_t st) {
  topKKernel<<<static_cast<unsigned>(static_cast<int64_t>(P.nQ) * P.nHead), kTopKThreads, smem, st>>>(P);
}

void launchCombine(const Params& P, cudaStream_t st) {
  combineKernel<<<static_cast<unsigned>(static_cast<int64_t>(P.nQ) * P.nHead), kCombineThreads, 0, st>>>(P);
}

}  // namespace lmi::attn::cuda::detail
