// The Λ-attention driver: validation, planning (sorted keys, query blocks, work items),
// the per-item tile loop with online softmax, and threading. The arithmetic on tiles
// lives in kernels_*.cpp; the RoPE coefficients in rope_table.cpp.
//
// Work items. Queries are sorted by position and cut into blocks of up to ~64/G queries
// (G = query heads per KV head) whose positions span at most a few windows. An item is
//   (KV head g, query block b, head subset hs, key split ks)   (g outermost)
// and computes rows (query, head) for the heads of g in hs against the keys of split ks.
// The rows of one item share every loaded, converted and rotated key tile.
// - run() uses one head subset and, when there are fewer than 32 (block, KV head) pairs,
//   splits each block's key range into up to 32/pairs parts whose partial softmax states
//   (m, l, O, top-k candidates) are merged after the join. The split count depends only on
//   the problem, so results do not depend on opts.threads.
// - runPartition() never splits keys (no barrier to merge after); with few items it splits
//   the G heads of a KV head into subsets instead. Rows never interact, so the result is
//   bit-identical for every nth.
//
// Keys. Non-empty slots, and the queries' own rows kNew/vNew when given (as slots nSlot + i), are
// sorted by (position, slot) once per call; a block visits the
// sorted index intervals that can hold kept keys: the global prefix and the local range
// (Λ), everything up to the block's last position (vanilla, or Λ with top-k). Tiles of 64
// keys are classified as a whole when possible (all local / all middle) and otherwise
// per (query, key) with classify(). Per tile: logits S = Q K^T (keys transposed for a
// register-blocked GEMM, or kept as rows for blocks of <= 4 rows, i.e. decode), masked,
// an online-softmax step (running max m, sum l, unnormalized O), then O += P V. Top-k
// middle logits go to a k-entry list per row and join the softmax when the row is finished.
// Decode tiles of local keys take fused primitives (localLogits, accumulateValues) and, at head
// dim 8 where the keys sit in consecutive slots at consecutive positions, one call for the whole
// tile (denseTileDim8). Cache-shaped inputs (a few disjoint runs of consecutive slots and
// positions) are ordered without a sort.
//
// RoPE. With r = the block's last query position, keys are rotated by R(j - r) and
// queries by R(i - r), so <R(i-r)q, R(j-r)k> = <R(i-j)q, k> (local branch). Decode-sized
// blocks anchor each tile at its last key a instead (keys by R(j - a), the few query rows by
// R(i - a)), so that the keys' coefficients come from the table's first, cached rows. Global and
// middle logits use the un-rotated key against R(L)q and R(insertAt)q. All distances are
// int64 differences; their cos/sin come from RopeTable (built in double), so shifting
// every position and the origin by the same amount leaves the arithmetic unchanged.
//
// Turned keys (Problem::keyTurnPeriod M): the row of key j holds R(j mod M) k, i.e. the key turned
// from its base j - (j mod M). Rotations then count from bases: a decode tile whose keys share one
// base (its intervals cut so, Block::f0/f1) anchors at that base and turns only its query rows;
// other tiles turn each key from its base, and global and middle logits turn the row back first.
#include "lmi/attention.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "check.h"
#include "kernels.h"
#include "rope_table.h"

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#define LMI_X86_GNU 1
#include <cpuid.h>
#endif

namespace lmi::attn {
namespace detail {
namespace {

constexpr int kKT = 64;                          // keys per tile
constexpr int kRowsTarget = 64;                  // (query, head) rows per block, target
constexpr int kLockstepHeads = 8;               // runPartition decode, slot-major K/V: KV heads walked together
constexpr int kRowKeysMaxRows = 4;               // blocks with at most this many rows skip transposing keys
constexpr int kFusedMaxRows = 16;                // ... and at most this many take the fused decode tiles (faster up to 16-24 rows)
constexpr int kFusedGroupRows = 4;               // rows per call of the fused primitives
constexpr int64_t kTargetItems = 32;             // run(): split keys below this many items
constexpr int64_t kMinTilesPerSplit = 4;
constexpr double kFlopsPerThread = 1 << 21;      // run(): at least this much work per extra thread
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

inline int roundUp8(int x) { return (x + 7) & ~7; }

// v[c] == v[0] + c for every c < n (written without an early exit, so that it vectorizes).
inline bool consecutive(const int64_t* v, int n) {
  int64_t off = 0;
  for (int c = 0; c < n; c++) off |= v[c] - v[0] - c;
  return off == 0;
}

// The position a stored key's turn is relative to: j - (j mod period) for keys stored turned by
// R(j mod period) (Problem::keyTurnPeriod), j itself for un-turned ones (period 0). j >= 0.
inline int64_t turnBase(int64_t j, int64_t period) { return period > 0 ? j - j % period : j; }

struct TopEntry {
  float v;      // the middle logit (scaled, with bias)
  int64_t idx;  // index into the sorted key list
};
// Total order for top-k: larger logit first, then the earlier key.
inline bool better(const TopEntry& a, const TopEntry& b) { return a.v > b.v || (a.v == b.v && a.idx < b.idx); }

struct Block {
  int qBegin = 0, qEnd = 0;  // range in the sorted query order
  int64_t pmin = 0, pmax = 0;
  int64_t a0 = 0, b0 = 0, a1 = 0, b1 = 0;  // visited sorted-key intervals [a0, b0), [a1, b1)
  int64_t visited() const { return (b0 - a0) + (b1 - a1); }
  // Tiles of up to kKT keys, each interval cut from its start: its first tile takes f0 / f1 keys,
  // every later one kKT (the last what is left). f is kKT but in decode blocks over turned keys,
  // where the first tile ends at the next turn base, so that (with a period of kKT and consecutive
  // positions) each tile's keys share one base.
  int f0 = kKT, f1 = kKT;
  static int64_t tileCount(int64_t len, int f) { return len <= 0 ? 0 : len <= f ? 1 : 1 + (len - f + kKT - 1) / kKT; }
  int64_t tiles0() const { return tileCount(b0 - a0, f0); }
  int64_t tiles() const { return tiles0() + tileCount(b1 - a1, f1); }
};

// Per-call storage for the plan (kept in a pooled Scratch so it is reused across calls).
struct PlanStore {
  std::vector<std::pair<int64_t, int64_t>> keys, keysTmp;  // (position, slot)
  std::vector<int64_t> sPos, sSlot;
  // Sorted key i begins a run of consecutive cache slots at consecutive positions that ends
  // before sorted key runEnd[i] (runEnd[i] == i for the queries' own rows).
  std::vector<int64_t> runEnd;
  // What sPos / sSlot were sorted from (slot positions, then the queries' positions when they
  // bring their own rows): a model's layers make the same call one after the other, and an equal
  // input skips the collecting and sorting.
  std::vector<int64_t> orderFrom;
  bool orderValid = false;
  std::shared_ptr<const RopeTable> table;  // the last call's, reused while the parameters match
  std::vector<std::pair<int64_t, int64_t>> qs, qsTmp;      // (position, query index)
  std::vector<int> qOrder;
  std::vector<Block> blocks;
  std::vector<float> partial;        // [items][rowsMax][Dp + 2]: O, m, l
  std::vector<TopEntry> partialTop;  // [items][rowsMax][kEff]
  std::vector<int> partialTopN;      // [items][rowsMax]
  std::vector<TopEntry> mergeTop;
};

struct Plan {
  const Problem* p = nullptr;
  const KernelOps* ops = nullptr;
  int G = 1, D = 0, Dp = 0, rd = 0;
  bool rope = false, alibi = false, lambda = true, topk = false;
  int64_t turn = 0;  // Problem::keyTurnPeriod: keys stored turned by R(j mod turn); 0: not turned
  bool fusedLocal = false;  // decode tiles of local keys go to ops->localLogits / accumulateValues
  bool denseDim8 = false;   // ... or, when their rows and positions are consecutive, to ops->denseTileDim8
  int kEff = 0;  // top-k entries kept per row: min(k, keys)
  int64_t kStride = 0, vStride = 0;          // between slots of k, v
  int64_t kHeadStride = 0, vHeadStride = 0;  // between KV heads of k, v
  int64_t kNewStride = 0, vNewStride = 0;
  const int64_t* sPos = nullptr;
  const int64_t* sSlot = nullptr;
  const int64_t* runEnd = nullptr;
  int64_t nS = 0;
  int64_t gEnd = 0;  // Λ: sorted keys [0, gEnd) have position - origin < nGlobal
  const int* qOrder = nullptr;
  const Block* blocks = nullptr;
  int64_t nBlocks = 0;
  int qbMax = 1, rowsMax = 1;
  int nHS = 1, headsPerSub = 1, nKS = 1;
  int64_t nItems = 0;
  double flops = 0.0;  // rough work estimate: 4 * Dp per visited (query, key, head)
  std::shared_ptr<const RopeTable> table;
  // key-split partial states (nKS > 1)
  float* partial = nullptr;
  TopEntry* partialTop = nullptr;
  int* partialTopN = nullptr;
};

struct Scratch {
  std::vector<float> qLoc, qGlob, qMid, qTile, o, m, l;
  std::vector<float> s, sg, sm;
  std::vector<float> kRaw, kRot, ktLoc, ktRaw, vt;
  std::vector<float> tmpRow, ropeTmp, acc;
  std::vector<int8_t> cls;
  std::vector<int64_t> qPosBlk, rowI, newRows;
  std::vector<int> rowQ, rowHead;
  std::vector<float> rowSlope, rowGBias, rowMBias;
  std::vector<TopEntry> top;
  std::vector<int> topN;
  // Fused decode tiles: each key's K and V row, for this tile and the next (whose rows this one
  // asks for while it computes), swapping roles from tile to tile.
  std::vector<const void*> kPtr[2], vPtr[2];
  std::vector<const float*> cPtr, sPtr;  // ... and its RoPE coefficients
  std::vector<float> ropeTile;           // coefficients computed for distances beyond the table
  std::vector<int64_t> turnBases;        // turned keys: each key's turn base
  PlanStore plan;

  void ensure(const Plan& P) {
    const size_t rows = static_cast<size_t>(P.rowsMax);
    const size_t Dp = static_cast<size_t>(P.Dp);
    auto grow = [](auto& v, size_t n) {
      if (v.size() < n) v.resize(n);
    };
    for (auto* v : {&qLoc, &qGlob, &qMid, &qTile, &o}) grow(*v, rows * Dp);
    for (auto* v : {&m, &l, &rowSlope, &rowGBias, &rowMBias}) grow(*v, rows);
    for (auto* v : {&s, &sg, &sm}) grow(*v, rows * kKT);
    for (auto* v : {&kRaw, &kRot, &ktLoc, &ktRaw, &vt}) grow(*v, kKT * Dp);
    grow(tmpRow, Dp);
    grow(newRows, kKT);
    grow(acc, Dp);
    grow(ropeTmp, 2 * Dp);
    grow(cls, static_cast<size_t>(P.qbMax) * kKT);
    grow(qPosBlk, static_cast<size_t>(P.qbMax));
    grow(rowI, rows);
    grow(rowQ, rows);
    grow(rowHead, rows);
    grow(top, rows * static_cast<size_t>(std::max(P.kEff, 1)));
    grow(topN, rows);
    for (auto* v : {&kPtr[0], &vPtr[0], &kPtr[1], &vPtr[1]}) grow(*v, kKT);
    for (auto* v : {&cPtr, &sPtr}) grow(*v, kKT);
    grow(turnBases, kKT);
    grow(ropeTile, static_cast<size_t>(kKT) * 2 * std::max(P.rd, 1));
  }
};

// Scratch objects are pooled so that repeated calls (one per layer and token) reuse them.
class ScratchPool {
 public:
  std::unique_ptr<Scratch> take() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!free_.empty()) {
        auto s = std::move(free_.back());
        free_.pop_back();
        return s;
      }
    }
    return std::make_unique<Scratch>();
  }
  void give(std::unique_ptr<Scratch> s) {
    std::lock_guard<std::mutex> lock(mu_);
    if (free_.size() < kMaxFree) free_.push_back(std::move(s));
  }

 private:
  static constexpr size_t kMaxFree = 64;
  std::mutex mu_;
  std::vector<std::unique_ptr<Scratch>> free_;
};

ScratchPool& pool() {
  static ScratchPool* p = new ScratchPool();  // never destroyed: safe during static teardown
  return *p;
}

class Lease {
 public:
  Lease() : s_(pool().take()) {}
  ~Lease() { pool().give(std::move(s_)); }
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;
  Scratch& operator*() { return *s_; }
  Scratch* operator->() { return s_.get(); }

 private:
  std::unique_ptr<Scratch> s_;
};

// Sorts v ascending. Inputs made of a few ascending runs (a ring buffer: pinned slots,
// then the ring from its write head, then its start) are merged in linear time.
template <class T>
void sortRuns(std::vector<T>& v, std::vector<T>& tmp) {
  const size_t n = v.size();
  constexpr int kMaxRuns = 16;
  size_t bounds[kMaxRuns + 2];
  int nb = 0;
  bounds[nb++] = 0;
  for (size_t i = 1; i < n; i++) {
    if (v[i] < v[i - 1]) {
      if (nb > kMaxRuns) {
        std::sort(v.begin(), v.end());
        return;
      }
      bounds[nb++] = i;
    }
  }
  bounds[nb++] = n;
  tmp.resize(n);
  while (nb > 2) {  // nb - 1 runs
    size_t next[kMaxRuns + 2];
    int nn = 0;
    for (int r = 0; r + 1 < nb; r += 2) {
      const size_t lo = bounds[r], mid = bounds[r + 1];
      if (r + 2 < nb) {
        const size_t hi = bounds[r + 2];
        std::merge(v.begin() + lo, v.begin() + mid, v.begin() + mid, v.begin() + hi, tmp.begin() + lo);
      } else {
        std::copy(v.begin() + lo, v.begin() + mid, tmp.begin() + lo);
      }
      next[nn++] = lo;
    }
    next[nn++] = n;
    v.swap(tmp);
    std::copy(next, next + nn, bounds);
    nb = nn;
  }
}

// The input the key order is sorted from: nSlot, the slot positions, and the queries' positions
// when their own rows are keys (kNew).
size_t orderInputSize(const Problem& p) {
  return 2 + static_cast<size_t>(p.nSlot) + (p.kNew != nullptr ? static_cast<size_t>(p.nQ) : 0);
}

bool sameOrderInput(const Problem& p, const PlanStore& ps) {
  const std::vector<int64_t>& f = ps.orderFrom;
  if (!ps.orderValid || f.size() != orderInputSize(p) || f[0] != p.nSlot || f[1] != (p.kNew != nullptr))
    return false;
  const size_t n = static_cast<size_t>(p.nSlot);
  if (n > 0 && std::memcmp(f.data() + 2, p.slotPos, n * sizeof(int64_t)) != 0) return false;
  return p.kNew == nullptr || p.nQ == 0 ||
         std::memcmp(f.data() + 2 + n, p.qPos, static_cast<size_t>(p.nQ) * sizeof(int64_t)) == 0;
}

void rememberOrderInput(const Problem& p, PlanStore& ps) {
  std::vector<int64_t>& f = ps.orderFrom;
  f.resize(orderInputSize(p));
  f[0] = p.nSlot;
  f[1] = p.kNew != nullptr;
  const size_t n = static_cast<size_t>(p.nSlot);
  if (n > 0) std::memcpy(f.data() + 2, p.slotPos, n * sizeof(int64_t));
  if (p.kNew != nullptr && p.nQ > 0) std::memcpy(f.data() + 2 + n, p.qPos, static_cast<size_t>(p.nQ) * sizeof(int64_t));
  ps.orderValid = true;
}

// The key order without a sort, for the shapes a cache takes: the non-empty slots, and the
// queries' own rows, form at most kMaxKeyRuns runs of consecutive positions in consecutive slots
// (a ring: the pinned slots, the ring from its oldest slot, the ring's start; the batch's rows)
// whose position ranges do not overlap, so that (position, slot) order is the runs' order by
// first position. Writes sPos, sSlot and runEnd and returns true, or returns false (nothing
// written) for any other input.
constexpr int kMaxKeyRuns = 16;

bool orderByRuns(const Problem& p, PlanStore& ps) {
  struct Run {
    int64_t pos, slot, len;
    bool own;
  };
  Run runs[kMaxKeyRuns];
  int nr = 0;
  auto scan = [&](const int64_t* pos, int64_t n, int64_t slot0, bool own) {
    for (int64_t s = 0; s < n;) {
      if (pos[s] < 0) {
        s++;
        continue;
      }
      int64_t e = s + 1;
      while (e < n && pos[e] == pos[e - 1] + 1) e++;
      if (nr == kMaxKeyRuns) return false;
      runs[nr++] = Run{pos[s], slot0 + s, e - s, own};
      s = e;
    }
    return true;
  };
  if (!scan(p.slotPos, p.nSlot, 0, false)) return false;
  if (p.kNew != nullptr && !scan(p.qPos, p.nQ, p.nSlot, true)) return false;
  for (int i = 1; i < nr; i++)  // insertion sort by first position
    for (int j = i; j > 0 && runs[j].pos < runs[j - 1].pos; j--) std::swap(runs[j], runs[j - 1]);
  int64_t n = 0;
  for (int i = 0; i < nr; i++) {
    if (i > 0 && runs[i - 1].pos + runs[i - 1].len > runs[i].pos) return false;  // overlapping positions
    n += runs[i].len;
  }
  ps.sPos.resize(static_cast<size_t>(n));
  ps.sSlot.resize(static_cast<size_t>(n));
  ps.runEnd.resize(static_cast<size_t>(n));
  int64_t at = 0;
  for (int i = 0; i < nr; i++) {
    const Run& r = runs[i];
    for (int64_t t = 0; t < r.len; t++) {
      ps.sPos[at + t] = r.pos + t;
      ps.sSlot[at + t] = r.slot + t;
      ps.runEnd[at + t] = r.own ? at + t : at + r.len;
    }
    at += r.len;
  }
  return true;
}

// The key order for any input: keys sorted by (position, slot), empty slots dropped, the
// queries' own rows as slots nSlot + i; sPos, sSlot and runEnd.
void sortKeys(const Problem& p, PlanStore& ps) {
  ps.keys.clear();
  for (int64_t s = 0; s < p.nSlot; s++)
    if (p.slotPos[s] >= 0) ps.keys.emplace_back(p.slotPos[s], s);
  if (p.kNew != nullptr)
    for (int i = 0; i < p.nQ; i++) ps.keys.emplace_back(p.qPos[i], p.nSlot + i);
  sortRuns(ps.keys, ps.keysTmp);
  const int64_t n = static_cast<int64_t>(ps.keys.size());
  ps.sPos.resize(ps.keys.size());
  ps.sSlot.resize(ps.keys.size());
  for (int64_t i = 0; i < n; i++) {
    ps.sPos[i] = ps.keys[i].first;
    ps.sSlot[i] = ps.keys[i].second;
  }
  ps.runEnd.resize(ps.keys.size());
  for (int64_t i = n - 1; i >= 0; i--) {
    const bool own = ps.sSlot[i] >= p.nSlot;
    const bool joins = i + 1 < n && ps.sSlot[i + 1] == ps.sSlot[i] + 1 && ps.sPos[i + 1] == ps.sPos[i] + 1 &&
                       ps.sSlot[i + 1] < p.nSlot;
    ps.runEnd[i] = own ? i : joins ? ps.runEnd[i + 1] : i + 1;
  }
}

// nthPartition > 0: plan for runPartition with that many partitions (head subsets, no key
// splits). nthPartition == 0: plan for run() (key splits when items are few).
void buildPlan(const Problem& p, const KernelOps* ops, int nthPartition, PlanStore& ps, Plan& P) {
  P.p = &p;
  P.ops = ops;
  P.G = p.nHead / p.nHeadKV;
  P.D = p.headDim;
  P.Dp = roundUp8(p.headDim);
  P.rope = p.pe.kind == Encoding::Rope;
  P.turn = P.rope ? p.keyTurnPeriod : 0;
  P.rd = P.rope ? (p.pe.rotaryDim ? p.pe.rotaryDim : p.headDim) : 0;
  P.alibi = p.pe.kind == Encoding::Alibi;
  P.lambda = p.mask.lambda;
  P.topk = p.mask.lambda && p.topK.k > 0;
  const int64_t row = static_cast<int64_t>(p.nHeadKV) * p.headDim;
  P.kStride = p.kSlotStride ? p.kSlotStride : row;
  P.vStride = p.vSlotStride ? p.vSlotStride : row;
  P.kHeadStride = p.kHeadStride ? p.kHeadStride : p.headDim;
  P.vHeadStride = p.vHeadStride ? p.vHeadStride : p.headDim;
  P.kNewStride = p.kNewStride ? p.kNewStride : row;
  P.vNewStride = p.vNewStride ? p.vNewStride : row;

  // Keys sorted by (position, slot); empty slots dropped; the queries' own rows as slots nSlot + i.
  if (!sameOrderInput(p, ps)) {
    if (!orderByRuns(p, ps)) sortKeys(p, ps);
    rememberOrderInput(p, ps);
  }
  P.nS = static_cast<int64_t>(ps.sPos.size());
  P.sPos = ps.sPos.data();
  P.sSlot = ps.sSlot.data();
  P.runEnd = ps.runEnd.data();
  const LambdaMask& mk = p.mask;
  const int64_t* pb = ps.sPos.data();
  const int64_t* pe = pb + P.nS;
  P.gEnd = P.lambda ? std::partition_point(pb, pe, [&](int64_t j) { return j - mk.origin < mk.nGlobal; }) - pb : 0;
  P.kEff = P.topk ? static_cast<int>(std::min<int64_t>(p.topK.k, std::max<int64_t>(P.nS, 1))) : 0;
  P.fusedLocal = ops->localLogits != nullptr && (p.kvType != KVType::Q8_0 || ops->readsQ8) && P.D % 8 == 0 &&
                 P.D <= 256 && (!P.rope || P.rd % (p.pe.pairing == RopePairing::NeoX ? 16 : 8) == 0);

  // Queries sorted by (position, index) and cut into blocks.
  ps.qs.clear();
  for (int i = 0; i < p.nQ; i++) ps.qs.emplace_back(p.qPos[i], i);
  sortRuns(ps.qs, ps.qsTmp);
  ps.qOrder.resize(ps.qs.size());
  for (size_t i = 0; i < ps.qs.size(); i++) ps.qOrder[i] = static_cast<int>(ps.qs[i].second);
  P.qOrder = ps.qOrder.data();
  const int qb = std::max(1, kRowsTarget / P.G);
  // A block visits the union of its queries' windows: keep its span small next to nLocal.
  const int64_t spanLimit = P.lambda ? std::max<int64_t>(8, mk.nLocal / 2) : std::max<int64_t>(4 * qb, 4096);
  // Turned keys: a fused decode block's first tile of an interval ends at the next turn base.
  auto firstTile = [&](int64_t a, int64_t b) {
    if (b <= a) return kKT;
    const int64_t end = turnBase(pb[a], P.turn) + P.turn;
    return static_cast<int>(std::partition_point(pb + a, pb + std::min(b, a + kKT), [&](int64_t j) { return j < end; }) -
                            (pb + a));
  };
  ps.blocks.clear();
  for (int start = 0; start < p.nQ;) {
    int end = start + 1;
    const int64_t p0 = ps.qs[start].first;
    while (end < p.nQ && end - start < qb && ps.qs[end].first - p0 <= spanLimit) end++;
    Block b;
    b.qBegin = start;
    b.qEnd = end;
    b.pmin = p0;
    b.pmax = ps.qs[end - 1].first;
    const int64_t hi = std::partition_point(pb, pe, [&](int64_t j) { return j <= b.pmax; }) - pb;
    // Over turned keys a decode block's window keys get an interval of their own, whose tiles can
    // then start at turn bases (Block::f1); the two intervals cover the same keys as one.
    const bool turnedDecode = P.turn > 0 && P.fusedLocal && (end - start) * P.G <= kFusedMaxRows;
    const int64_t lo =
        P.lambda ? std::partition_point(pb, pb + hi, [&](int64_t j) { return b.pmin - j >= mk.nLocal; }) - pb : 0;
    const int64_t g = P.lambda && !P.topk ? std::min(P.gEnd, hi) : 0;
    b.a0 = 0;
    if (P.lambda && !P.topk && lo > g) {  // the global prefix, then the window
      b.b0 = g;
      b.a1 = lo;
      b.b1 = hi;
    } else if (turnedDecode) {  // everything before the window, then the window
      b.b0 = lo;
      b.a1 = lo;
      b.b1 = hi;
    } else {  // one interval: all keys up to the block's last query (vanilla, top-k, a short stream)
      b.b0 = hi;
      b.a1 = b.b1 = hi;
    }
    if (turnedDecode) {
      b.f0 = firstTile(b.a0, b.b0);
      b.f1 = firstTile(b.a1, b.b1);
    }
    ps.blocks.push_back(b);
    start = end;
  }
  P.blocks = ps.blocks.data();
  P.nBlocks = static_cast<int64_t>(ps.blocks.size());
  P.qbMax = qb;
  const int64_t pairs = P.nBlocks * p.nHeadKV;

  P.nHS = 1;
  P.headsPerSub = P.G;
  P.nKS = 1;
  if (nthPartition > 0) {
    if (pairs < nthPartition && P.G > 1) {
      const int64_t want = std::min<int64_t>(P.G, (nthPartition + pairs - 1) / pairs);
      P.headsPerSub = static_cast<int>((P.G + want - 1) / want);
      P.nHS = (P.G + P.headsPerSub - 1) / P.headsPerSub;
    }
  } else if (pairs < kTargetItems) {
    int64_t maxTiles = 0;
    for (const Block& b : ps.blocks) maxTiles = std::max(maxTiles, b.tiles());
    const int64_t want = (kTargetItems + pairs - 1) / pairs;
    P.nKS = static_cast<int>(std::max<int64_t>(1, std::min(want, maxTiles / kMinTilesPerSplit)));
  }
  P.rowsMax = qb * P.headsPerSub;
  for (const Block& b : ps.blocks)
    P.flops += 4.0 * P.Dp * static_cast<double>(b.visited()) * (b.qEnd - b.qBegin) * p.nHead;
  P.nItems = pairs * P.nHS * P.nKS;

  if (P.rope) {
    if (!ps.table || !ps.table->matches(p.pe.thetaBase, p.pe.freqScale, P.rd))
      ps.table = ropeTable(p.pe.thetaBase, p.pe.freqScale, P.rd);
    P.table = ps.table;
  }
  P.denseDim8 = P.fusedLocal && ops->denseTileDim8 != nullptr && P.D == 8 && !P.alibi && P.kStride == 8 &&
                P.vStride == 8 && (!P.rope || P.table->runCoeffs() != nullptr);

  if (P.nKS > 1) {
    const size_t items = static_cast<size_t>(P.nItems);
    const size_t rows = static_cast<size_t>(P.rowsMax);
    if (ps.partial.size() < items * rows * (P.Dp + 2)) ps.partial.resize(items * rows * (P.Dp + 2));
    if (ps.partialTop.size() < items * rows * std::max(P.kEff, 1))
      ps.partialTop.resize(items * rows * std::max(P.kEff, 1));
    if (ps.partialTopN.size() < items * rows) ps.partialTopN.resize(items * rows);
    P.partial = ps.partial.data();
    P.partialTop = ps.partialTop.data();
    P.partialTopN = ps.partialTopN.data();
  }
}

// dst[r] = the K (value = false) or V row of KV head g for slot slots[r] (r < n <= kKT), reading
// slots >= nSlot from the queries' own rows (kNew, vNew); see KernelOps::loadRows.
void gatherRows(const Plan& P, Scratch& sc, bool value, int g, const int64_t* slots, int n, float* dst) {
  const Problem& p = *P.p;
  const void* base = value ? p.v : p.k;
  const int64_t stride = value ? P.vStride : P.kStride;
  const int64_t headOff = static_cast<int64_t>(g) * (value ? P.vHeadStride : P.kHeadStride);
  if (p.kNew == nullptr) {
    P.ops->loadRows(base, p.kvType, stride, headOff, slots, n, P.D, P.Dp, dst);
    return;
  }
  // Runs of cache slots and of new rows, each loaded in one call.
  for (int r = 0; r < n;) {
    const bool isNew = slots[r] >= p.nSlot;
    int e = r + 1;
    while (e < n && (slots[e] >= p.nSlot) == isNew) e++;
    float* d = dst + static_cast<int64_t>(r) * P.Dp;
    if (isNew) {
      int64_t* rows = sc.newRows.data();
      for (int i = r; i < e; i++) rows[i - r] = slots[i] - p.nSlot;
      P.ops->loadRows(value ? p.vNew : p.kNew, p.kvType, value ? P.vNewStride : P.kNewStride,
                      static_cast<int64_t>(g) * P.D, rows, e - r, P.D, P.Dp, d);
    } else {
      P.ops->loadRows(base, p.kvType, stride, headOff, slots + r, e - r, P.D, P.Dp, d);
    }
    r = e;
  }
}

// Normalizes one row: folds the kept middle keys (top) into the softmax state (m, l, O)
// and writes O / l (zeros when nothing was kept).
void finalizeRow(const Plan& P, Scratch& sc, int kvh, float m, float l, const float* O, const TopEntry* top,
                 int cnt, float* out) {
  const int D = P.D;
  float M = m;
  for (int e = 0; e < cnt; e++) M = std::max(M, top[e].v);
  if (M == kNegInf) {
    std::fill(out, out + D, 0.0f);
    return;
  }
  const float alpha = m == kNegInf ? 0.0f : std::exp(m - M);
  float* acc = sc.acc.data();
  for (int d = 0; d < D; d++) acc[d] = O[d] * alpha;
  float lsum = l * alpha;
  for (int e = 0; e < cnt; e++) {
    const float w = std::exp(top[e].v - M);
    lsum += w;
    const int64_t slot = P.sSlot[top[e].idx];
    gatherRows(P, sc, true, kvh, &slot, 1, sc.tmpRow.data());
    for (int d = 0; d < D; d++) acc[d] += w * sc.tmpRow[d];
  }
  const float inv = 1.0f / lsum;
  for (int d = 0; d < D; d++) out[d] = acc[d] * inv;
}

class Worker {
 public:
  Worker(const Plan& P, Scratch& sc) : P_(P), p_(*P.p), sc_(sc), ops_(*P.ops) { sc_.ensure(P); }

  void run(int64_t t) {
    if (!begin(t)) return;
    visitTiles(t0_, t1_);
    finish();
  }

  // run() in three steps, so that several items can walk their tiles in lockstep
  // (runPartition): begin() returns false for an item with no rows (nothing to do).
  bool begin(int64_t t) {
    item_ = t;
    const int ks = static_cast<int>(t % P_.nKS);
    t /= P_.nKS;
    const int hs = static_cast<int>(t % P_.nHS);
    t /= P_.nHS;
    const int64_t b = t % P_.nBlocks;  // neighbouring items share most of their keys
    g_ = static_cast<int>(t / P_.nBlocks);
    const int hBeg = hs * P_.headsPerSub;
    if (hBeg >= P_.G) return false;
    const int nh = std::min(P_.G - hBeg, P_.headsPerSub);
    blk_ = &P_.blocks[b];
    prepareQueries(*blk_, g_, hBeg, nh);

    std::fill(sc_.m.begin(), sc_.m.begin() + R_, kNegInf);
    std::fill(sc_.l.begin(), sc_.l.begin() + R_, 0.0f);
    std::fill(sc_.o.begin(), sc_.o.begin() + static_cast<size_t>(R_) * P_.Dp, 0.0f);
    std::fill(sc_.topN.begin(), sc_.topN.begin() + R_, 0);
    nextAt_ = -1;

    // This split's share [t0, t1) of the block's tiles, in visiting order.
    const int64_t T = blk_->tiles();
    t0_ = T * ks / P_.nKS;
    t1_ = T * (ks + 1) / P_.nKS;
    return true;
  }

  // The item's tiles [u0, u1) (within its share [t0, t1)), in visiting order.
  void visitTiles(int64_t u0, int64_t u1) {
    const Block& blk = *blk_;
    const int64_t T0 = blk.tiles0();
    visit(blk, g_, blk.a0, blk.b0, blk.f0, std::min(u0, T0), std::min(u1, T0));
    visit(blk, g_, blk.a1, blk.b1, blk.f1, std::max<int64_t>(u0 - T0, 0), std::max<int64_t>(u1 - T0, 0));
  }

  int64_t tileEnd() const { return t1_; }

  void finish() {
    const Block& blk = *blk_;
    const int g = g_;
    const int64_t item = item_;
    if (P_.nKS == 1) {
      for (int r = 0; r < R_; r++) {
        const int qIdx = P_.qOrder[blk.qBegin + sc_.rowQ[r]];
        float* out = p_.out + (static_cast<int64_t>(qIdx) * p_.nHead + sc_.rowHead[r]) * P_.D;
        finalizeRow(P_, sc_, g, sc_.m[r], sc_.l[r], &sc_.o[static_cast<size_t>(r) * P_.Dp],
                    &sc_.top[static_cast<size_t>(r) * std::max(P_.kEff, 1)], sc_.topN[r], out);
      }
    } else {
      const size_t rows = static_cast<size_t>(P_.rowsMax);
      const size_t kk = static_cast<size_t>(std::max(P_.kEff, 1));
      float* part = P_.partial + static_cast<size_t>(item) * rows * (P_.Dp + 2);
      for (int r = 0; r < R_; r++) {
        float* dst = part + static_cast<size_t>(r) * (P_.Dp + 2);
        std::memcpy(dst, &sc_.o[static_cast<size_t>(r) * P_.Dp], sizeof(float) * P_.Dp);
        dst[P_.Dp] = sc_.m[r];
        dst[P_.Dp + 1] = sc_.l[r];
        P_.partialTopN[item * rows + r] = sc_.topN[r];
        std::copy(&sc_.top[r * kk], &sc_.top[r * kk] + sc_.topN[r], P_.partialTop + (item * rows + r) * kk);
      }
    }
  }

 private:
  // Rows r = qi * nh + hh. Fills qLoc = scale * R(i - pmax) q, qGlob = scale * R(L) q and
  // qMid = scale * R(insertAt) q (RoPE; otherwise all three are scale * q).
  void prepareQueries(const Block& blk, int g, int hBeg, int nh) {
    const int Dp = P_.Dp, D = P_.D;
    nq_ = blk.qEnd - blk.qBegin;
    nh_ = nh;
    // A block property (not the item's), so head subsets do not change the arithmetic.
    rowKeys_ = nq_ * P_.G <= kRowKeysMaxRows;
    fusedRows_ = nq_ * P_.G <= kFusedMaxRows;
    R_ = nq_ * nh;
    const bool needGlobal = P_.lambda && P_.gEnd > 0;
    qGlob_ = P_.rope ? sc_.qGlob.data() : sc_.qLoc.data();
    qMid_ = P_.rope ? sc_.qMid.data() : sc_.qLoc.data();
    float* x = sc_.tmpRow.data();
    for (int qi = 0; qi < nq_; qi++) {
      const int qIdx = P_.qOrder[blk.qBegin + qi];
      const int64_t i = p_.qPos[qIdx];
      sc_.qPosBlk[qi] = i;
      const int64_t L = globalDistance(i, p_.mask);
      for (int hh = 0; hh < nh; hh++) {
        const int h = g * P_.G + hBeg + hh;
        const int r = qi * nh + hh;
        const float* src = p_.q + (static_cast<int64_t>(qIdx) * p_.nHead + h) * D;
        std::memcpy(x, src, sizeof(float) * D);
        std::fill(x + D, x + Dp, 0.0f);
        sc_.rowQ[r] = qi;
        sc_.rowI[r] = i;
        sc_.rowHead[r] = h;
        const double slope = P_.alibi ? static_cast<double>(p_.pe.alibiSlopes[h]) : 0.0;
        sc_.rowSlope[r] = static_cast<float>(slope);
        sc_.rowGBias[r] = P_.alibi ? static_cast<float>(-slope * static_cast<double>(L)) : 0.0f;
        sc_.rowMBias[r] = P_.alibi ? static_cast<float>(-slope * static_cast<double>(p_.topK.insertAt)) : 0.0f;
        placeQuery(x, &sc_.qLoc[static_cast<size_t>(r) * Dp], i - blk.pmax);
        if (P_.rope && needGlobal) placeQuery(x, &sc_.qGlob[static_cast<size_t>(r) * Dp], L);
        if (P_.rope && P_.topk) placeQuery(x, &sc_.qMid[static_cast<size_t>(r) * Dp], p_.topK.insertAt);
      }
    }
  }

  // Whether the keys at sorted positions jp[0, n) are turned and share one turn base.
  bool oneBase(const int64_t* jp, int n) const {
    return P_.turn > 0 && turnBase(jp[0], P_.turn) == turnBase(jp[n - 1], P_.turn);
  }

  // The positions the keys at jp[0, n) turn from: their turn bases (in scratch), or jp itself
  // when keys are not turned.
  const int64_t* keyBases(const int64_t* jp, int n) {
    if (P_.turn == 0) return jp;
    int64_t* bases = sc_.turnBases.data();
    for (int c = 0; c < n; c++) bases[c] = turnBase(jp[c], P_.turn);
    return bases;
  }

  // x = R(-dist) x: a turned key's row back to the key (x: Dp floats, dist > 0).
  void turnBack(float* x, int64_t dist) {
    const float* C;
    const float* S;
    P_.table->coeffs(dist, &C, &S, sc_.ropeTmp.data());
    float* y = sc_.acc.data();
    ops_.rotate(x, y, P_.rd, P_.Dp, p_.pe.pairing, C, S, -1.0f);
    std::memcpy(x, y, sizeof(float) * P_.Dp);
  }

  // y = scale * R(dist) x (R = identity without RoPE).
  void placeQuery(const float* x, float* y, int64_t dist) {
    if (P_.rope) {
      const float* C;
      const float* S;
      P_.table->coeffs(dist < 0 ? -dist : dist, &C, &S, sc_.ropeTmp.data());
      ops_.rotate(x, y, P_.rd, P_.Dp, p_.pe.pairing, C, S, dist < 0 ? -1.0f : 1.0f);
    } else {
      std::memcpy(y, x, sizeof(float) * P_.Dp);
    }
    for (int d = 0; d < P_.Dp; d++) y[d] *= p_.scale;
  }

  // Tiles [tBeg, tEnd) of the sorted-key interval [a, b), whose first tile has f keys (Block).
  void visit(const Block& blk, int g, int64_t a, int64_t b, int f, int64_t tBeg, int64_t tEnd) {
    intervalEnd_ = b;
    auto tileStart = [&](int64_t u) { return u == 0 ? a : std::min(b, a + f + (u - 1) * kKT); };
    const int64_t hi = tileStart(tEnd);
    auto tileKeys = [&](int64_t c0) { return static_cast<int>(std::min<int64_t>(c0 == a ? f : kKT, hi - c0)); };
    const int64_t lo = tileStart(tBeg);
    const bool fusedBlock = fusedRows_ && P_.fusedLocal;
    // Dense head-dim-8 rows are 16 or 32 bytes, mostly in runs the hardware prefetcher follows.
    if (P_.denseDim8) {
      for (int64_t c0 = lo, n; c0 < hi; c0 += n) {
        n = tileKeys(c0);
        tile(blk, g, c0, static_cast<int>(n));
      }
      return;
    }
    // Decode blocks: a fused tile asks for the next tile's rows key by key while it computes
    // (askedFor); a tile nobody asked for (an interval's first) asks for its own rows here. Asking
    // a whole tile ahead at once instead left a step's K/V reads from memory stalling the kernel.
    if (!fusedBlock && lo < hi) prefetch(false, g, lo, tileKeys(lo));
    for (int64_t c0 = lo, step; c0 < hi; c0 += step) {
      const int n = tileKeys(c0);
      step = n;
      if (fusedBlock) {
        if (!askedFor(c0, n)) {
          prefetch(false, g, c0, n);
          prefetch(true, g, c0, n);
        }
      } else {
        // The rows of a tile are scattered by slot: ask for this tile's values and the
        // next tile's keys while this one computes.
        prefetch(true, g, c0, n);
        if (c0 + n < hi) prefetch(false, g, c0 + n, tileKeys(c0 + n));
      }
      tile(blk, g, c0, n);
    }
  }

  // The K (value = false) or V row of KV head g for sorted-key slot `slot`.
  const void* rowAddress(bool value, int64_t slot, int g) const {
    const KVType t = p_.kvType;
    if (slot >= p_.nSlot) {  // one of the queries' own rows
      const void* base = value ? p_.vNew : p_.kNew;
      const int64_t stride = value ? P_.vNewStride : P_.kNewStride;
      return static_cast<const char*>(base) + kvBytes(t, (slot - p_.nSlot) * stride + static_cast<int64_t>(g) * P_.D);
    }
    const void* base = value ? p_.v : p_.k;
    const int64_t stride = value ? P_.vStride : P_.kStride;
    const int64_t headStride = value ? P_.vHeadStride : P_.kHeadStride;
    return static_cast<const char*>(base) + kvBytes(t, slot * stride + static_cast<int64_t>(g) * headStride);
  }

  // Asks for the K (value = false) or V rows of KV head g of sorted keys [c0, c0 + n).
  void prefetch(bool value, int g, int64_t c0, int n) {
    const int64_t bytes = kvBytes(p_.kvType, P_.D);
    for (int c = 0; c < n; c++) prefetchRow(rowAddress(value, P_.sSlot[c0 + c], g), bytes);
  }

  void zeroRows(float* buf, int from, int to) {
    std::fill(buf + static_cast<size_t>(from) * P_.Dp, buf + static_cast<size_t>(to) * P_.Dp, 0.0f);
  }

  void pushTop(int r, float v, int64_t idx) {
    if (!(v == v)) return;  // NaN never enters
    const int k = P_.kEff;
    TopEntry* t = &sc_.top[static_cast<size_t>(r) * k];
    int& cnt = sc_.topN[r];
    const TopEntry e{v, idx};
    if (cnt == k) {
      if (!better(e, t[k - 1])) return;
      cnt--;
    }
    int pos = cnt;
    while (pos > 0 && better(e, t[pos - 1])) {
      t[pos] = t[pos - 1];
      pos--;
    }
    t[pos] = e;
    cnt++;
  }

  // The local query rows turned for keys turned by R(j - anchor): R(i - anchor) q, from qLoc =
  // R(i - pmax) q (RoPE only).
  const float* queriesFrom(const Block& blk, int64_t anchor) {
    if (anchor == blk.pmax) return sc_.qLoc.data();
    const int Dp = P_.Dp;
    const float* C;
    const float* S;
    P_.table->coeffs(blk.pmax - anchor, &C, &S, sc_.ropeTmp.data());
    float* qTile = sc_.qTile.data();
    for (int r = 0; r < R_; r++)
      ops_.rotate(sc_.qLoc.data() + static_cast<size_t>(r) * Dp, qTile + static_cast<size_t>(r) * Dp, P_.rd, Dp,
                  p_.pe.pairing, C, S, 1.0f);
    return qTile;
  }

  // Local logits S[R][kKT] of keys at positions jp[0, n): the ALiBi bias -slope (i - j), and
  // -inf in the padding up to a multiple of 8.
  void finishLocalLogits(float* S, const int64_t* jp, int n) {
    const int Np = roundUp8(n);
    for (int r = 0; r < R_; r++) {
      float* row = S + static_cast<size_t>(r) * kKT;
      if (P_.alibi) {
        const double slope = sc_.rowSlope[r];
        const int64_t i = sc_.rowI[r];
        for (int c = 0; c < n; c++) row[c] += static_cast<float>(-slope * static_cast<double>(i - jp[c]));
      }
      for (int c = n; c < Np; c++) row[c] = kNegInf;
    }
  }

  // Whether the fused tile before asked for the rows of sorted keys [c0, c0 + n) (and left their
  // pointers in kPtr[flip_], vPtr[flip_]).
  bool askedFor(int64_t c0, int n) const { return nextAt_ == c0 && nextN_ >= n; }

  // kp[c], vp[c] = the K and V rows of KV head g for sorted-key slot js[c], c < n.
  void rowPointers(int g, const int64_t* __restrict js, int n, const void** __restrict kp,
                   const void** __restrict vp) const {
    const KVType t = p_.kvType;
    const char* k = static_cast<const char*>(p_.k) + kvBytes(t, static_cast<int64_t>(g) * P_.kHeadStride);
    const char* v = static_cast<const char*>(p_.v) + kvBytes(t, static_cast<int64_t>(g) * P_.vHeadStride);
    const int64_t ks = kvBytes(t, P_.kStride), vs = kvBytes(t, P_.vStride), nSlot = p_.nSlot;
    if (js[n - 1] < nSlot && consecutive(js, n)) {
      // Consecutive slots (a ring's run): one stride from the first row, no per-key branch.
      const char* k0 = k + js[0] * ks;
      const char* v0 = v + js[0] * vs;
      for (int c = 0; c < n; c++) {
        kp[c] = k0 + c * ks;
        vp[c] = v0 + c * vs;
      }
      return;
    }
    for (int c = 0; c < n; c++) {
      const int64_t slot = js[c];
      if (slot < nSlot) {
        kp[c] = k + slot * ks;
        vp[c] = v + slot * vs;
      } else {
        kp[c] = rowAddress(false, slot, g);
        vp[c] = rowAddress(true, slot, g);
      }
    }
  }

  // Coefficient rows that turn key c back by R(-dist[c]) inside the fused primitives (cp[c],
  // sp[c]): lane rows for Normal pairs, rotate()'s pair rows for NeoX ones; rows the table does
  // not hold are computed into ropeTile.
  void turnRows(const int64_t* dist, int n, const float** cp, const float** sp) {
    const RopeTable& table = *P_.table;
    const int rd = P_.rd;
    if (p_.pe.pairing == RopePairing::Normal) {
      int64_t lastD = -1;  // keys of one turn base share a distance: computed once for them
      const float* lastRow = nullptr;
      for (int c = 0; c < n; c++) {
        const int64_t d = dist[c];
        const float* row;
        if (d < RopeTable::kLaneRows) {
          row = table.laneRow(d);
        } else if (d == lastD) {
          row = lastRow;
        } else {
          float* t = sc_.ropeTile.data() + static_cast<size_t>(c) * 2 * rd;
          table.laneCoeffs(d, t);
          row = t;
          lastD = d;
          lastRow = t;
        }
        cp[c] = row;
        sp[c] = row + rd;
      }
      return;
    }
    for (int c = 0; c < n; c++) {
      const int64_t d = dist[c];
      const float* row = d < RopeTable::kLo ? table.builtLowRow(d) : nullptr;
      if (row != nullptr) {
        cp[c] = row;
        sp[c] = row + rd / 2;
      } else {
        table.coeffs(d, &cp[c], &sp[c], sc_.ropeTile.data() + static_cast<size_t>(c) * 2 * rd);
      }
    }
  }

  // A decode-sized tile whose keys are all local, or all global (without ALiBi), through the
  // fused primitives: the same logits as the general path below up to the order of the dot
  // products' sums, and the same rotation, softmax step and value accumulation. Local keys turn
  // by R(j - a), a = the tile's last key, and the query rows by R(pmax - a); global keys are taken
  // un-turned against the query rows placed at the global distance, as the general path takes them.
  void fusedTile(const Block& blk, int g, int64_t c0, int n, bool global) {
    const int Dp = P_.Dp;
    const int Np = roundUp8(n);
    const int64_t* jp = P_.sPos + c0;
    const int64_t* js = P_.sSlot + c0;
    const void** kp = sc_.kPtr[flip_].data();
    const void** vp = sc_.vPtr[flip_].data();
    if (!askedFor(c0, n)) rowPointers(g, js, n, kp, vp);  // else the tile before found them
    // Key c asks for the rows of sorted key c0 + n + c (the next tile's c-th) within the
    // interval; past its end, for its own again (already in cache by then).
    const void** ka = sc_.kPtr[flip_ ^ 1].data();
    const void** va = sc_.vPtr[flip_ ^ 1].data();
    {
      const int64_t to = std::min(c0 + 2 * static_cast<int64_t>(n), intervalEnd_);
      const int m = static_cast<int>(std::max<int64_t>(to - (c0 + n), 0));
      if (m > 0) rowPointers(g, P_.sSlot + c0 + n, m, ka, va);
      for (int c = m; c < n; c++) {
        ka[c] = kp[c];
        va[c] = vp[c];
      }
      nextAt_ = c0 + n;
      nextN_ = m;
      flip_ ^= 1;
    }
    const float* qLoc = sc_.qLoc.data();
    const float* const* C = nullptr;
    const float* const* S = nullptr;
    const float** cp = sc_.cPtr.data();
    const float** sp = sc_.sPtr.data();
    int64_t dist[kKT];
    if (global) {
      qLoc = qGlob_;
      if (P_.rope && P_.turn > 0) {
        // A turned key turns back by its offset from its base, as turnBack() does in the general path.
        for (int c = 0; c < n; c++) dist[c] = jp[c] - turnBase(jp[c], P_.turn);
        turnRows(dist, n, cp, sp);
        C = cp;
        S = sp;
      }
    } else if (P_.rope && oneBase(jp, n)) {
      // Keys stored turned, all from one base (Block::f1): the row of key j holds R(j - base) k,
      // which is the R(j - a) k this tile needs for the anchor a = base; only the query rows turn.
      qLoc = queriesFrom(blk, turnBase(jp[n - 1], P_.turn));
    } else if (P_.rope) {
      // Turned keys (a tile that spans two bases: positions that are not consecutive) turn from
      // their bases, un-turned ones from their positions.
      const int64_t* kpos = keyBases(jp, n);
      const int64_t anchor = kpos[n - 1];
      if (p_.pe.pairing == RopePairing::Normal && n <= RopeTable::kLaneRows && consecutive(kpos, n)) {
        // Consecutive positions: key c is at distance n - 1 - c, the precomputed rows in reverse.
        const int64_t step = 2 * static_cast<int64_t>(P_.rd);
        const float* last = P_.table->laneRow(n - 1);
        for (int c = 0; c < n; c++) {
          cp[c] = last - c * step;
          sp[c] = last - c * step + P_.rd;
        }
      } else {
        for (int c = 0; c < n; c++) dist[c] = anchor - kpos[c];
        turnRows(dist, n, cp, sp);
      }
      C = cp;
      S = sp;
      qLoc = queriesFrom(blk, anchor);
    }
    // The primitives take up to four rows; larger GQA groups take several calls, each converting
    // and turning the keys again (from L1). Every row's arithmetic is the same however they group.
    float* Sc = sc_.s.data();
    for (int r0 = 0; r0 < R_; r0 += kFusedGroupRows)
      ops_.localLogits(std::min(kFusedGroupRows, R_ - r0), n, kp, r0 == 0 ? ka : nullptr, p_.kvType, P_.D, P_.rd,
                       p_.pe.pairing, C, S, qLoc + static_cast<size_t>(r0) * Dp, Dp,
                       Sc + static_cast<size_t>(r0) * kKT, kKT);
    finishLocalLogits(Sc, jp, n);  // global tiles have no ALiBi: the padding alone
    ops_.softmaxTile(Sc, kKT, R_, Np, sc_.m.data(), sc_.l.data(), sc_.o.data(), Dp, Dp);
    for (int r0 = 0; r0 < R_; r0 += kFusedGroupRows)
      ops_.accumulateValues(std::min(kFusedGroupRows, R_ - r0), n, vp, r0 == 0 ? va : nullptr, p_.kvType, P_.D,
                            Sc + static_cast<size_t>(r0) * kKT, kKT, sc_.o.data() + static_cast<size_t>(r0) * Dp, Dp);
  }

  // A fused local tile whose keys sit in consecutive slots at consecutive positions, at head
  // dim 8 (P_.denseDim8): one call per four rows does it all, with the same rotation as
  // fusedTile.
  void denseTile(const Block& blk, int g, int64_t c0, int n) {
    static_assert(kKT <= RopeTable::kLaneRows, "a dense tile's keys take their turns from the first kLaneRows rows");
    const int Dp = P_.Dp;
    const int64_t slot = P_.sSlot[c0];
    const void* k = static_cast<const char*>(p_.k) + kvBytes(p_.kvType, slot * P_.kStride + g * P_.kHeadStride);
    const void* v = static_cast<const char*>(p_.v) + kvBytes(p_.kvType, slot * P_.vStride + g * P_.vHeadStride);
    const float* run = nullptr;
    const float* qC = nullptr;  // the query rows' turn, as queriesFrom() would give it
    const float* qS = nullptr;
    if (P_.rope) {
      // Turned keys share one base here (tile()): they need no turn, the query rows turn to it.
      run = P_.turn > 0 ? nullptr : P_.table->runCoeffs();
      const int64_t d = blk.pmax - turnBase(P_.sPos[c0 + n - 1], P_.turn);
      if (d != 0) {
        const float* row = d < RopeTable::kLo ? P_.table->builtLowRow(d) : nullptr;
        if (row != nullptr) {
          qC = row;
          qS = row + P_.rd / 2;
        } else {
          P_.table->coeffs(d, &qC, &qS, sc_.ropeTmp.data());
        }
      }
    }
    const float* q = sc_.qLoc.data();
    for (int r0 = 0; r0 < R_; r0 += kFusedGroupRows)
      ops_.denseTileDim8(std::min(kFusedGroupRows, R_ - r0), n, k, v, p_.kvType, run, qC, qS,
                         q + static_cast<size_t>(r0) * Dp, Dp, sc_.m.data() + r0, sc_.l.data() + r0,
                         sc_.o.data() + static_cast<size_t>(r0) * Dp, Dp);
  }

  // One tile: sorted keys [c0, c0 + n), n <= kKT.
  void tile(const Block& blk, int g, int64_t c0, int n) {
    const LambdaMask& mk = p_.mask;
    const int Dp = P_.Dp;
    const int Np = roundUp8(n);
    const int64_t* jp = P_.sPos + c0;
    const int64_t* js = P_.sSlot + c0;
    const int64_t jmin = jp[0], jmax = jp[n - 1];
    if (jmin > blk.pmax) return;

    enum class Kind { Mixed, AllLocal, AllGlobal, AllMiddle } kind = Kind::Mixed;
    if (!P_.lambda) {
      if (jmax <= blk.pmin) kind = Kind::AllLocal;
    } else if (jmax <= blk.pmin && blk.pmax - jmin < mk.nLocal) {
      kind = Kind::AllLocal;
    } else if (blk.pmin - jmax >= mk.nLocal) {  // every pair is beyond the window
      if (jmax - mk.origin < mk.nGlobal) {
        kind = Kind::AllGlobal;
      } else if (jmin - mk.origin >= mk.nGlobal) {
        if (!P_.topk) return;
        kind = Kind::AllMiddle;
      }
    }

    if (kind == Kind::AllLocal && fusedRows_ && P_.fusedLocal) {
      if (P_.denseDim8 && P_.runEnd[c0] >= c0 + n &&
          (P_.turn == 0 || oneBase(jp, n)))
        return denseTile(blk, g, c0, n);
      return fusedTile(blk, g, c0, n, false);
    }
    if (kind == Kind::AllGlobal && fusedRows_ && P_.fusedLocal && !P_.alibi) return fusedTile(blk, g, c0, n, true);

    bool anyLocal = kind == Kind::AllLocal, anyGlobal = kind == Kind::AllGlobal, anyMiddle = kind == Kind::AllMiddle;
    int8_t* cls = sc_.cls.data();
    if (kind == Kind::Mixed) {
      for (int qi = 0; qi < nq_; qi++) {
        const int64_t i = sc_.qPosBlk[qi];
        for (int c = 0; c < n; c++) {
          Branch br = classify(i, jp[c], mk);
          if (br == Branch::Middle && !P_.topk) br = Branch::Masked;
          anyLocal |= br == Branch::Local;
          anyGlobal |= br == Branch::Global;
          anyMiddle |= br == Branch::Middle;
          cls[qi * kKT + c] = static_cast<int8_t>(br);
        }
      }
      if (!anyLocal && !anyGlobal && !anyMiddle) return;
    }

    // Keys as rows (kRaw, kRot) for decode-sized blocks, transposed (ktRaw, ktLoc) otherwise.
    float* kRaw = sc_.kRaw.data();
    gatherRows(P_, sc_, false, g, js, n, kRaw);
    // Turned keys: global and middle logits take the un-turned key, so turn it back then; local
    // ones alone turn it from its base (as from its position when it is not turned).
    const int64_t* kpos = keyBases(jp, n);
    if (P_.turn > 0 && (anyGlobal || anyMiddle)) {
      for (int c = 0; c < n; c++)
        if (jp[c] != kpos[c]) turnBack(kRaw + static_cast<size_t>(c) * Dp, jp[c] - kpos[c]);
      kpos = jp;
    }
    zeroRows(kRaw, n, Np);
    const float* ktLoc = nullptr;
    const float* ktRaw = nullptr;
    const float* kLocRows = kRaw;
    const float* qLoc = sc_.qLoc.data();  // R(i - pmax) q, against keys turned by R(j - pmax)
    if (anyLocal && P_.rope) {
      float* kRot = sc_.kRot.data();
      float* tmp = sc_.ropeTmp.data();
      // Decode-sized blocks turn the keys by R(j - a), a = the tile's last key, and their few query
      // rows by R(pmax - a) once per tile: the keys' coefficients are then the table's first rows,
      // which stay in cache, where R(j - pmax) would read a different row per key and per token.
      const int64_t anchor = rowKeys_ ? kpos[n - 1] : blk.pmax;
      for (int c = 0; c < n; c++) {
        const float* C;
        const float* S;
        P_.table->coeffs(anchor - kpos[c], &C, &S, tmp);  // R(j - anchor), j <= anchor
        ops_.rotate(kRaw + static_cast<size_t>(c) * Dp, kRot + static_cast<size_t>(c) * Dp, P_.rd, Dp,
                    p_.pe.pairing, C, S, -1.0f);
      }
      qLoc = queriesFrom(blk, anchor);
      zeroRows(kRot, n, Np);
      kLocRows = kRot;
      if (!rowKeys_) {
        ops_.transpose(kRot, Dp, Np, Dp, sc_.ktLoc.data(), kKT);
        ktLoc = sc_.ktLoc.data();
      }
    }
    if (!rowKeys_ && ((anyLocal && !P_.rope) || anyGlobal || anyMiddle)) {
      ops_.transpose(kRaw, Dp, Np, Dp, sc_.ktRaw.data(), kKT);
      ktRaw = sc_.ktRaw.data();
      if (!P_.rope) ktLoc = ktRaw;
    }
    // S[R][Np] = Q[R][Dp] . keys^T, with the keys in whichever layout was built above.
    auto qk = [&](const float* Q, bool local, float* out) {
      if (rowKeys_)
        ops_.gemmNT(R_, Np, Dp, Q, Dp, local ? kLocRows : kRaw, Dp, out, kKT);
      else
        ops_.gemm(R_, Np, Dp, Q, Dp, local ? ktLoc : ktRaw, kKT, out, kKT, false);
    };

    float* S = sc_.s.data();
    if (kind == Kind::AllMiddle) {
      float* sm = sc_.sm.data();
      qk(qMid_, false, sm);
      for (int r = 0; r < R_; r++) {
        const float* row = sm + static_cast<size_t>(r) * kKT;
        const float bias = sc_.rowMBias[r];
        for (int c = 0; c < n; c++) pushTop(r, row[c] + bias, c0 + c);
      }
      return;
    }
    if (kind == Kind::AllGlobal) {
      qk(qGlob_, false, S);
      for (int r = 0; r < R_; r++) {
        float* row = S + static_cast<size_t>(r) * kKT;
        const float bias = sc_.rowGBias[r];
        for (int c = 0; c < n; c++) row[c] += bias;
        for (int c = n; c < Np; c++) row[c] = kNegInf;
      }
    } else if (kind == Kind::AllLocal) {
      qk(qLoc, true, S);
      finishLocalLogits(S, jp, n);
    } else {
      // Mixed: the logits each branch needs, then a per-(query, key) choice.
      const float* baseLoc = S;
      const float* baseGlob = S;
      const float* baseMid = S;
      if (!P_.rope) {
        qk(qLoc, false, S);
      } else {
        if (anyLocal) qk(qLoc, true, S);
        if (anyGlobal) {
          qk(qGlob_, false, sc_.sg.data());
          baseGlob = sc_.sg.data();
        }
        if (anyMiddle) {
          qk(qMid_, false, sc_.sm.data());
          baseMid = sc_.sm.data();
        }
      }
      for (int r = 0; r < R_; r++) {
        const size_t off = static_cast<size_t>(r) * kKT;
        float* row = S + off;
        const int8_t* cq = cls + sc_.rowQ[r] * kKT;
        const int64_t i = sc_.rowI[r];
        const double slope = sc_.rowSlope[r];
        for (int c = 0; c < n; c++) {
          switch (static_cast<Branch>(cq[c])) {
            case Branch::Local:
              row[c] = baseLoc[off + c] +
                       (P_.alibi ? static_cast<float>(-slope * static_cast<double>(i - jp[c])) : 0.0f);
              break;
            case Branch::Global:
              row[c] = baseGlob[off + c] + sc_.rowGBias[r];
              break;
            case Branch::Middle:
              pushTop(r, baseMid[off + c] + sc_.rowMBias[r], c0 + c);
              row[c] = kNegInf;
              break;
            default:
              row[c] = kNegInf;
              break;
          }
        }
        for (int c = n; c < Np; c++) row[c] = kNegInf;
      }
      if (!anyLocal && !anyGlobal) return;
    }

    ops_.softmaxTile(S, kKT, R_, Np, sc_.m.data(), sc_.l.data(), sc_.o.data(), Dp, Dp);
    float* vt = sc_.vt.data();
    gatherRows(P_, sc_, true, g, js, n, vt);
    zeroRows(vt, n, Np);
    ops_.gemm(R_, Dp, Np, S, kKT, vt, Dp, sc_.o.data(), Dp, true);
  }

  const Plan& P_;
  const Problem& p_;
  Scratch& sc_;
  const KernelOps& ops_;
  int64_t item_ = 0, t0_ = 0, t1_ = 0;
  const Block* blk_ = nullptr;
  int g_ = 0;
  int nq_ = 0, nh_ = 0, R_ = 0;
  bool rowKeys_ = false;
  bool fusedRows_ = false;
  int64_t intervalEnd_ = 0;  // the end of the sorted-key interval being visited
  int64_t nextAt_ = -1;      // the sorted key from which the last fused tile asked for rows ...
  int nextN_ = 0;            // ... for this many keys (their pointers in kPtr[flip_], vPtr[flip_])
  int flip_ = 0;
  const float* qGlob_ = nullptr;
  const float* qMid_ = nullptr;
};

// run() with key splits: combine the splits of each (block, KV head) and write the output.
void mergePartials(const Plan& P, Scratch& sc) {
  const Problem& p = *P.p;
  const size_t rows = static_cast<size_t>(P.rowsMax);
  const size_t kk = static_cast<size_t>(std::max(P.kEff, 1));
  const int Dp = P.Dp;
  std::vector<TopEntry>& merged = sc.plan.mergeTop;
  float* O = sc.o.data();  // Dp floats; finalizeRow uses acc and tmpRow, not o
  for (int64_t b = 0; b < P.nBlocks; b++) {
    const Block& blk = P.blocks[b];
    const int nq = blk.qEnd - blk.qBegin;
    for (int g = 0; g < p.nHeadKV; g++) {
      const int64_t item0 = (g * P.nBlocks + b) * P.nKS;  // nHS == 1 in run()
      for (int r = 0; r < nq * P.G; r++) {
        float M = kNegInf;
        for (int ks = 0; ks < P.nKS; ks++) M = std::max(M, P.partial[((item0 + ks) * rows + r) * (Dp + 2) + Dp]);
        std::fill(O, O + Dp, 0.0f);
        float l = 0.0f;
        merged.clear();
        for (int ks = 0; ks < P.nKS; ks++) {
          const size_t at = (item0 + ks) * rows + r;
          const float* part = P.partial + at * (Dp + 2);
          const float m = part[Dp];
          if (m != kNegInf) {
            const float w = std::exp(m - M);
            for (int d = 0; d < Dp; d++) O[d] += w * part[d];
            l += w * part[Dp + 1];
          }
          const TopEntry* t = P.partialTop + at * kk;
          merged.insert(merged.end(), t, t + P.partialTopN[at]);
        }
        std::sort(merged.begin(), merged.end(), better);
        const int cnt = static_cast<int>(std::min(merged.size(), static_cast<size_t>(P.kEff)));
        const int qi = r / P.G;
        const int h = g * P.G + r % P.G;
        const int qIdx = P.qOrder[blk.qBegin + qi];
        float* out = p.out + (static_cast<int64_t>(qIdx) * p.nHead + h) * P.D;
        finalizeRow(P, sc, g, M, l, O, merged.data(), cnt, out);
      }
    }
  }
}

const KernelOps& pickOps(const RunOptions& opts) {
  if (!opts.forcePortable && !opts.noAvx512 && cpuHasAvx512()) return *avx512Ops();
  if (!opts.forcePortable && cpuHasAvx2Fma()) return *avx2Ops();
  return portableOps();
}

}  // namespace
}  // namespace detail

bool cpuHasAvx2Fma() {
#if defined(LMI_X86_GNU)
  static const bool has = [] {
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return false;
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
    return (c & (1u << 29)) != 0;  // F16C
  }();
  return has && detail::avx2Ops() != nullptr;
#else
  return false;
#endif
}

bool cpuHasAvx512() {
#if defined(LMI_X86_GNU)
  static const bool has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512dq");
  }();
  return has && cpuHasAvx2Fma() && detail::avx512Ops() != nullptr;
#else
  return false;
#endif
}

void run(const Problem& p, const RunOptions& opts) {
  using namespace detail;
  validate(p);
  const KernelOps& ops = pickOps(opts);
  Lease main;
  Plan P;
  buildPlan(p, &ops, 0, main->plan, P);
  const int64_t nItems = P.nItems;
  std::atomic<int64_t> next{0};
  // Items in reverse order: the last query blocks are the most expensive under vanilla.
  auto work = [&](Scratch& sc) {
    Worker w(P, sc);
    for (;;) {
      const int64_t t = next.fetch_add(1, std::memory_order_relaxed);
      if (t >= nItems) break;
      w.run(nItems - 1 - t);
    }
  };
  // Starting a thread costs tens of microseconds: small calls (a short decode) stay inline.
  const int64_t byWork = static_cast<int64_t>(P.flops / kFlopsPerThread) + 1;
  const int nw = static_cast<int>(std::min<int64_t>({std::max(opts.threads, 1), nItems, byWork}));
  if (nw == 1) {
    work(*main);
  } else {
    std::vector<std::thread> threads;
    std::vector<std::exception_ptr> errors(nw);
    threads.reserve(nw - 1);
    for (int t = 1; t < nw; t++) {
      try {
        threads.emplace_back([&, t] {
          try {
            Lease lease;
            work(*lease);
          } catch (...) {
            errors[t] = std::current_exception();
          }
        });
      } catch (...) {
        break;  // could not start a thread: the others (and this one) take its items
      }
    }
    try {
      work(*main);
    } catch (...) {
      errors[0] = std::current_exception();
      next.store(nItems);
    }
    for (auto& th : threads) th.join();
    for (auto& e : errors)
      if (e) std::rethrow_exception(e);
  }
  if (P.nKS > 1) {
    main->ensure(P);
    mergePartials(P, *main);
  }
}

void runPartition(const Problem& p, int ith, int nth, const RunOptions& opts) {
  using namespace detail;
  if (nth < 1) fail("runPartition: nth must be >= 1 (got " + str(int64_t(nth)) + ")");
  if (ith < 0 || ith >= nth)
    fail("runPartition: ith must be in [0, nth) (got " + str(int64_t(ith)) + " of " + str(int64_t(nth)) + ")");
  const KernelOps& ops = pickOps(opts);
  Lease lease;
  Plan P;
  buildPlan(p, &ops, nth, lease->plan, P);
  const bool decode = P.nBlocks == 1 && P.nHS == 1 && P.nKS == 1 &&
                      (P.blocks[0].qEnd - P.blocks[0].qBegin) * P.G <= kFusedMaxRows;
  if (!decode) {
    Worker w(P, *lease);
    for (int64_t t = ith; t < P.nItems; t += nth) w.run(t);
    return;
  }
  // Decode: the items are the KV heads; each thread takes a run of neighbouring heads.
  const int64_t g0 = P.nItems * ith / nth, g1 = P.nItems * (ith + 1) / nth;
  if (P.kHeadStride > P.kStride) {
    // Head-major K/V: each head's rows are one sequential stream, read head after head.
    Worker w(P, *lease);
    for (int64_t g = g0; g < g1; g++) w.run(g);
    return;
  }
  // Slot-major K/V: walk the heads' tiles in lockstep, reading the neighbouring parts of the
  // same slots' rows one after the other instead of one head's part of every row, then the next
  // head's: a strided pass per head reads markedly slower. Rows never interact, so the result is
  // the same bits.
  for (int64_t gs = g0; gs < g1; gs += kLockstepHeads) {
    const int k = static_cast<int>(std::min<int64_t>(kLockstepHeads, g1 - gs));
    std::vector<Lease> extra(static_cast<size_t>(k - 1));
    std::vector<Worker> ws;
    ws.reserve(static_cast<size_t>(k));
    ws.emplace_back(P, *lease);
    for (Lease& l : extra) ws.emplace_back(P, *l);
    int64_t T = 0;
    std::vector<char> live(static_cast<size_t>(k), 0);
    for (int i = 0; i < k; i++) {
      live[i] = ws[i].begin(gs + i);
      if (live[i]) T = std::max(T, ws[i].tileEnd());
    }
    for (int64_t u = 0; u < T; u++)
      for (int i = 0; i < k; i++)
        if (live[i] && u < ws[i].tileEnd()) ws[i].visitTiles(u, u + 1);
    for (int i = 0; i < k; i++)
      if (live[i]) ws[i].finish();
  }
}

}  // namespace lmi::attn
