// Host side of the CUDA kernels: the launch plan (kernel, rows per block, key splits),
// per-device state (SM count, shared-memory opt-in), the RoPE tables on the device, the
// scratch memory, and the launches. Nothing here synchronizes, except the one-time upload
// of a RoPE table for new (thetaBase, freqScale, rotaryDim).
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "../rope_table.h"
#include "attention_cuda_internal.h"
#include "kernels.cuh"
#include "lmi/attention_cuda.h"

namespace lmi::attn::cuda {
namespace detail {
namespace {

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    throw std::runtime_error(std::string("lmi attention (cuda): ") + what + ": " + cudaGetErrorString(e));
}

struct DeviceState {
  int sms = 1;
  size_t smemOptin = 48 * 1024;
};

// Per-device facts, and the dynamic shared-memory opt-in of every kernel, done once.
const DeviceState& deviceState(int dev) {
  static std::mutex mu;
  static std::map<int, DeviceState> states;
  std::lock_guard<std::mutex> lock(mu);
  auto it = states.find(dev);
  if (it != states.end()) return it->second;
  DeviceState s;
  int v = 0;
  check(cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev), "cudaDeviceGetAttribute(SM count)");
  s.sms = std::max(v, 1);
  check(cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev),
        "cudaDeviceGetAttribute(shared memory opt-in)");
  s.smemOptin = static_cast<size_t>(std::max(v, 48 * 1024));
  const int optin = static_cast<int>(s.smemOptin);
  for (const void* k : {scalarKernelPtr(), mmaKernelPtr(64), mmaKernelPtr(128), topKKernelPtr()})
    check(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, optin),
          "cudaFuncSetAttribute(max dynamic shared memory)");
  return states.emplace(dev, s).first->second;
}

// A RoPE table on one device: the CPU RopeTable's rows (built in double on the host by
// the same code), uploaded once.
struct RopeDev {
  float* lo = nullptr;
  float* hi = nullptr;
  double* invFreq = nullptr;
};

RopeView ropeView(int dev, double theta, double freq, int rd) {
  static std::mutex mu;
  static std::map<std::tuple<int, double, double, int>, RopeDev> tables;  // never freed: small, reused
  std::lock_guard<std::mutex> lock(mu);
  const auto key = std::make_tuple(dev, theta, freq, rd);
  auto it = tables.find(key);
  if (it == tables.end()) {
    const int half = rd / 2;
    const auto cpu = attn::detail::ropeTable(theta, freq, rd);
    std::vector<float> lo(static_cast<size_t>(kRopeLo) * rd), hi(static_cast<size_t>(kRopeHi) * rd);
    for (int64_t p = 0; p < kRopeLo; p++) cpu->direct(p, &lo[p * rd], &lo[p * rd + half]);
    for (int64_t p = 0; p < kRopeHi; p++) cpu->direct(p * kRopeLo, &hi[p * rd], &hi[p * rd + half]);
    std::vector<double> inv(std::max(half, 1));
    for (int k = 0; k < half; k++) inv[k] = freq * std::pow(theta, -2.0 * k / rd);
    RopeDev d;
    check(cudaMalloc(&d.lo, lo.size() * sizeof(float)), "cudaMalloc(rope table)");
    check(cudaMalloc(&d.hi, hi.size() * sizeof(float)), "cudaMalloc(rope table)");
    check(cudaMalloc(&d.invFreq, inv.size() * sizeof(double)), "cudaMalloc(rope table)");
    check(cudaMemcpy(d.lo, lo.data(), lo.size() * sizeof(float), cudaMemcpyHostToDevice), "cudaMemcpy(rope table)");
    check(cudaMemcpy(d.hi, hi.data(), hi.size() * sizeof(float), cudaMemcpyHostToDevice), "cudaMemcpy(rope table)");
    check(cudaMemcpy(d.invFreq, inv.data(), inv.size() * sizeof(double), cudaMemcpyHostToDevice),
          "cudaMemcpy(rope table)");
    // Every stream must see the table: wait for the upload once.
    check(cudaDeviceSynchronize(), "cudaDeviceSynchronize(rope table upload)");
    it = tables.emplace(key, d).first;
  }
  RopeView v;
  v.lo = it->second.lo;
  v.hi = it->second.hi;
  v.invFreq = it->second.invFreq;
  v.rd = rd;
  v.half = rd / 2;
  return v;
}

// Scratch memory per (device, stream), grown with stream-ordered allocations: work already
// enqueued on the stream finishes with the old buffer before it is freed. The entry stays
// locked while a call enqueues its kernels.
struct Scratch {
  std::mutex mu;
  void* ptr = nullptr;
  size_t bytes = 0;
};

Scratch& scratchFor(int dev, cudaStream_t st) {
  static std::mutex mu;
  static std::map<std::pair<int, cudaStream_t>, std::unique_ptr<Scratch>> all;
  std::lock_guard<std::mutex> lock(mu);
  auto& s = all[{dev, st}];
  if (!s) s = std::make_unique<Scratch>();
  return *s;
}

void* grow(Scratch& s, size_t bytes, cudaStream_t st) {
  if (bytes <= s.bytes) return s.ptr;
  bytes = std::max(bytes, s.bytes + s.bytes / 2);
  if (s.ptr) check(cudaFreeAsync(s.ptr, st), "cudaFreeAsync(scratch)");
  s.ptr = nullptr;
  s.bytes = 0;
  check(cudaMallocAsync(&s.ptr, bytes, st), "cudaMallocAsync(scratch)");
  s.bytes = bytes;
  return s.ptr;
}

// Elements per vector load: the largest of maxVec, 4, 2, 1 that divides headDim and the
// row stride and matches the base pointer's alignment.
int pickVec(const void* base, int64_t stride, int D, size_t esize, int maxVec) {
  for (int v = maxVec; v > 1; v /= 2)
    if (D % v == 0 && stride % v == 0 && reinterpret_cast<uintptr_t>(base) % (v * esize) == 0) return v;
  return 1;
}

// K or V rows: the slots, then the queries' own rows (fresh, may be null). Strides in
// elements, 0 = dense.
KVRows kvRows(const Problem& p, const void* slots, int64_t slotStride, const void* fresh, int64_t freshStride) {
  const int64_t dense = static_cast<int64_t>(p.nHeadKV) * p.headDim;
  const size_t esize = p.kvType == KVType::F16 ? 2 : 4;
  const int maxVec = p.kvType == KVType::F16 ? 8 : 4;
  slotStride = slotStride ? slotStride : dense;
  freshStride = freshStride ? freshStride : dense;
  KVRows r;
  r.slots = slots;
  r.fresh = fresh;
  r.nSlot = p.nSlot;
  r.slotPitch = slotStride * static_cast<int64_t>(esize);
  r.freshPitch = freshStride * static_cast<int64_t>(esize);
  r.vec = pickVec(slots, slotStride, p.headDim, esize, maxVec);
  // pickVec's answers are powers of two: the smaller one suits both sources.
  if (fresh) r.vec = std::min(r.vec, pickVec(fresh, freshStride, p.headDim, esize, maxVec));
  return r;
}

constexpr int kMaxSplits = 1024;

// Everything about a launch that does not need the device (sizes, rows, splits).
Params makeParams(const Problem& p, const RunOptions& o, int sms, RunPlan* plan) {
  Params P;
  P.nQ = p.nQ;
  P.nHead = p.nHead;
  P.nHeadKV = p.nHeadKV;
  P.D = p.headDim;
  P.G = p.nHead / p.nHeadKV;
  P.rope = p.pe.kind == Encoding::Rope;
  P.alibi = p.pe.kind == Encoding::Alibi;
  P.rd = P.rope ? (p.pe.rotaryDim ? p.pe.rotaryDim : p.headDim) : 0;
  P.half = P.rd / 2;
  P.neox = p.pe.pairing == RopePairing::NeoX;
  P.nSlot = p.nSlot;
  P.nNew = p.kNew ? p.nQ : 0;
  P.q = p.q;
  P.k = kvRows(p, p.k, p.kSlotStride, p.kNew, p.kNewStride);
  P.v = kvRows(p, p.v, p.vSlotStride, p.vNew, p.vNewStride);
  P.slotPos = p.slotPos;
  P.qPos = p.qPos;
  P.slopes = p.pe.alibiSlopes;
  P.out = p.out;
  P.f16 = p.kvType == KVType::F16;
  P.scale = p.scale;
  P.mask = p.mask;
  P.topk = p.mask.lambda && p.topK.k > 0;
  P.topK = P.topk ? p.topK.k : 0;
  P.insertAt = p.topK.insertAt;

  const bool mmaOk = mmaSupported(p);
  bool mma = false;
  if (o.path == Path::Mma) mma = mmaOk;
  if (o.path == Path::Auto) mma = mmaOk && static_cast<int64_t>(p.nQ) * P.G >= kMmaRows;
  if (mma) {
    P.HB = std::min(P.G, kMmaRows);
    P.QB = kMmaRows / P.HB;
  } else {
    const int rowsMax = P.D <= 128 ? kScalarRowsMax : kScalarRowsMax / 2;  // rows * headDim <= 2048
    P.HB = std::min(P.G, rowsMax);
    P.QB = std::max(1, std::min(rowsMax / P.HB, p.nQ));
  }
  P.nHeadChunks = (P.G + P.HB - 1) / P.HB;
  const int64_t blocks = static_cast<int64_t>((p.nQ + P.QB - 1) / P.QB) * p.nHeadKV * P.nHeadChunks;
  P.nTiles = (P.nSlot + P.nNew + kTile - 1) / kTile;

  int64_t splits = 1;
  if (o.splits > 0) {
    splits = o.splits;
  } else {
    const int64_t target = 2LL * sms * (mma ? 2 : 4);  // resident blocks to aim for
    const int64_t minTiles = mma ? 4 : 2;             // tiles per split, at least
    if (blocks < target) splits = std::min((target + blocks - 1) / blocks, std::max<int64_t>(1, P.nTiles / minTiles));
  }
  splits = std::max<int64_t>(1, std::min<int64_t>({splits, kMaxSplits, std::max<int64_t>(P.nTiles, 1)}));
  P.nSplit = static_cast<int>(splits);
  P.nParts = P.nSplit + (P.topk ? 1 : 0);

  const bool tileRange = o.tileRange >= 0 ? o.tileRange == 1 : (mma || p.nQ >= 8);
  if (plan) {
    plan->path = mma ? Path::Mma : Path::Scalar;
    plan->QB = P.QB;
    plan->HB = P.HB;
    plan->nHeadChunks = P.nHeadChunks;
    plan->nSplit = P.nSplit;
    plan->nParts = P.nParts;
    plan->blocks = blocks * P.nSplit;
    plan->tileRange = tileRange && P.nTiles > 0;
    plan->smemBytes = mma ? mmaSmemBytes(P) : scalarSmemBytes(P);
  }
  return P;
}

}  // namespace

bool mmaSupported(const Problem& p) { return p.kvType == KVType::F16 && p.headDim <= kMmaMaxDp; }

RunPlan plan(const Problem& p, const RunOptions& o) {
  validateShape(p);
  int sms = 132;
  int dev = 0;
  if (cudaGetDevice(&dev) == cudaSuccess) {
    int v = 0;
    if (cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev) == cudaSuccess && v > 0) sms = v;
  }
  (void)cudaGetLastError();
  RunPlan r;
  makeParams(p, o, sms, &r);
  return r;
}

void runWith(const Problem& p, void* stream, const RunOptions& o) {
  validateShape(p);
  const cudaStream_t st = static_cast<cudaStream_t>(stream);
  int dev = 0;
  check(cudaGetDevice(&dev), "cudaGetDevice");
  const DeviceState& ds = deviceState(dev);
  RunPlan pl;
  Params P = makeParams(p, o, ds.sms, &pl);
  if (P.rope) P.table = ropeView(dev, p.pe.thetaBase, p.pe.freqScale, P.rd);

  const size_t mainSmem = pl.smemBytes;
  const size_t topSmem = P.topk ? topKSmemBytes(P) : 0;
  if (mainSmem > ds.smemOptin || topSmem > ds.smemOptin)
    throw std::runtime_error("lmi attention (cuda): the kernel needs " + std::to_string(std::max(mainSmem, topSmem)) +
                             " bytes of shared memory; this device allows " + std::to_string(ds.smemOptin));

  // Scratch: [partML | partAcc | tileMin | tileMax], 256-byte aligned pieces.
  auto al = [](size_t x) { return (x + 255) & ~size_t(255); };
  const size_t rows = static_cast<size_t>(p.nQ) * p.nHead;
  const size_t mlBytes = P.nParts > 1 ? al(rows * P.nParts * 2 * sizeof(float)) : 0;
  const size_t accBytes = P.nParts > 1 ? al(rows * P.nParts * P.D * sizeof(float)) : 0;
  const size_t tileBytes = pl.tileRange ? al(static_cast<size_t>(P.nTiles) * sizeof(int64_t)) : 0;
  const size_t total = mlBytes + accBytes + 2 * tileBytes;

  Scratch& sc = scratchFor(dev, st);
  std::lock_guard<std::mutex> lock(sc.mu);
  char* base = total ? static_cast<char*>(grow(sc, total, st)) : nullptr;
  if (P.nParts > 1) {
    P.partML = reinterpret_cast<float*>(base);
    P.partAcc = reinterpret_cast<float*>(base + mlBytes);
  }
  int64_t* tMin = nullptr;
  int64_t* tMax = nullptr;
  if (pl.tileRange) {
    tMin = reinterpret_cast<int64_t*>(base + mlBytes + accBytes);
    tMax = reinterpret_cast<int64_t*>(base + mlBytes + accBytes + tileBytes);
    launchTileRange(P, tMin, tMax, st);
    check(cudaGetLastError(), "tile range kernel launch");
    P.tileMin = tMin;
    P.tileMax = tMax;
  }

  const dim3 grid(static_cast<unsigned>(pl.blocks / P.nSplit), static_cast<unsigned>(P.nSplit));
  if (pl.path == Path::Mma)
    launchMma(P, grid, mainSmem, st);
  else
    launchScalar(P, grid, mainSmem, st);
  check(cudaGetLastError(), pl.path == Path::Mma ? "mma kernel launch" : "scalar kernel launch");
  if (P.topk) {
    launchTopK(P, topSmem, st);
    check(cudaGetLastError(), "top-k kernel launch");
  }
  if (P.nParts > 1) {
    launchCombine(P, st);
    check(cudaGetLastError(), "combine kernel launch");
  }
}

}  // namespace detail

bool compiled() { return true; }

int deviceCount() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return n;
}

void run(const Problem& p, void* stream) { detail::runWith(p, stream, detail::RunOptions{}); }

}  // namespace lmi::attn::cuda
