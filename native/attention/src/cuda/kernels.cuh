// Shared by the CUDA kernels and their host driver (attention_cuda.cu): the launch
// parameters, the row/block mapping, and the launchers of each kernel file.
//
// Rows. A block computes rows (query, head) for QB consecutive queries (by index) and HB
// query heads of one KV head g: row r = qq * HB + hh is query qt * QB + qq and head
// g * G + hc * HB + hh. blockIdx.x = (qt * nHeadKV + g) * nHeadChunks + hc; blockIdx.y is
// the key split. Rows past nQ or past the group's G heads are computed as masked and never
// written.
//
// Keys. Key s in [0, nSlot + nNew) is slot s for s < nSlot, else the queries' own token
// s - nSlot (Problem::kNew/vNew, at qPos[s - nSlot]; nNew = nQ with them, else 0): keyPos and
// keyRow (device_common.cuh) are the only readers of positions and rows. Keys are visited in
// index order, in tiles of kTile keys; split s of nSplit visits tiles
// [nTiles * s / nSplit, nTiles * (s + 1) / nSplit). A ring buffer's slots are not in
// position order: masking looks at each key's position, and whole tiles are skipped from
// the per-tile position range (tileMin/tileMax, a pre-pass) when it proves them masked.
//
// RoPE. With r0 = the largest query position of the block, queries are rotated by
// R(i - r0) and keys by R(j - r0) (both distances <= 0), so <R(i-r0)q, R(j-r0)k> =
// <R(i-j)q, k>: the local branch with the true distance. Global logits use the un-rotated
// key against R(L)q, L = globalDistance(i). Top-k middle logits (a separate kernel) use
// R(insertAt)q. Coefficients come from the RopeView table (device copy of the CPU table).
//
// Output. With one part (nParts == 1: no key split, no top-k) a kernel writes out[]
// directly; otherwise each split writes its partial state (m, l, unnormalized acc) to
// part[row][split], top-k writes part[row][nSplit], and combineKernel merges them.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "device_math.h"
#include "lmi/lambda_rule.h"

namespace lmi::attn::cuda::detail {

constexpr int kTile = 32;         // key slots per tile (both kernels) and per tileMin/tileMax entry
constexpr int kThreads = 128;     // threads per block, scalar and mma kernels
constexpr int kScalarRowsMax = 16;
constexpr int kMmaRows = 64;      // rows per mma block: 4 warps x 16
constexpr int kMmaMaxDp = 128;    // the mma kernel takes headDim <= 128
constexpr int kTopKThreads = 256;
constexpr int kCombineThreads = 128;

// Where the rows of K (or V) are: key s < nSlot is row s of slots, key s >= nSlot row
// s - nSlot of fresh (null when there are no such keys). KV head g starts at element g * D.
struct KVRows {
  const void* slots = nullptr;
  const void* fresh = nullptr;
  int64_t nSlot = 0;
  int64_t slotPitch = 0, freshPitch = 0;  // bytes between rows
  int vec = 1;                            // elements per vector load, valid for both
};

struct Params {
  int nQ = 0, nHead = 0, nHeadKV = 0, D = 0, G = 1;
  int rd = 0, half = 0;
  int64_t nSlot = 0, nNew = 0;     // keys: nSlot slots, then nNew (0 or nQ) query tokens
  const float* q = nullptr;        // [nQ][nHead][D]
  KVRows k, v;
  const int64_t* slotPos = nullptr;
  const int64_t* qPos = nullptr;
  const float* slopes = nullptr;   // [nHead] (ALiBi)
  float* out = nullptr;            // [nQ][nHead][D]
  bool f16 = false, rope = false, neox = false, alibi = false, topk = false;
  float scale = 1.0f;
  LambdaMask mask;
  int topK = 0;
  int64_t insertAt = 0;
  RopeView table;

  // work split
  int QB = 1, HB = 1, nHeadChunks = 1;
  int nSplit = 1, nParts = 1;
  int64_t nTiles = 0;              // ceil((nSlot + nNew) / kTile)
  const int64_t* tileMin = nullptr;  // [nTiles] or null (no pre-pass)
  const int64_t* tileMax = nullptr;
  float* partML = nullptr;         // [nQ * nHead][nParts][2]: m, l
  float* partAcc = nullptr;        // [nQ * nHead][nParts][D]
};

// Dynamic shared memory of each kernel for these parameters (bytes).
size_t scalarSmemBytes(const Params& P);
size_t mmaSmemBytes(const Params& P);
size_t topKSmemBytes(const Params& P);

// Launchers (enqueue only; the caller checks cudaGetLastError).
void launchTileRange(const Params& P, int64_t* tileMin, int64_t* tileMax, cudaStream_t st);
void launchScalar(const Params& P, dim3 grid, size_t smem, cudaStream_t st);
void launchMma(const Params& P, dim3 grid, size_t smem, cudaStream_t st);
void launchTopK(const Params& P, size_t smem, cudaStream_t st);
void launchCombine(const Params& P, cudaStream_t st);

// Kernel function pointers, for cudaFuncSetAttribute (dynamic shared memory opt-in).
const void* scalarKernelPtr();
const void* mmaKernelPtr(int headDim);
const void* topKKernelPtr();

}  // namespace lmi::attn::cuda::detail
