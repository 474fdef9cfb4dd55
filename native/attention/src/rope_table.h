// Cached RoPE rotation coefficients for relative distances.
//
// For a distance p >= 0 and pair k (k < rotaryDim/2) the table gives cos(a_k) and
// sin(a_k), a_k = p * freqScale * thetaBase^(-2k/rotaryDim). R(p) turns pair (x, y)
// (Normal: dims 2k, 2k+1; NeoX: dims k, k + rotaryDim/2) into
// (x cos - y sin, x sin + y cos); R(-p) uses -sin. Every angle is an int64 distance
// converted to double and multiplied in double; only the final cos/sin are rounded to float.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>


namespace lmi::attn::detail {

class RopeTable {
 public:
  // Distances [0, kLo) are read from the low table; [kLo, kLo * kHi) combine one
  // low and one high row (angle addition, in float); larger ones use sin/cos directly.
  static constexpr int64_t kLo = 4096;
  static constexpr int64_t kHi = 1024;
  static constexpr int64_t kChunk = 256;  // rows built together, on first use

  RopeTable(double thetaBase, double freqScale, int rotaryDim);
  ~RopeTable();
  RopeTable(const RopeTable&) = delete;
  RopeTable& operator=(const RopeTable&) = delete;

  int rotaryDim() const { return rd_; }
  bool matches(double thetaBase, double freqScale, int rotaryDim) const {
    return thetaBase == theta_ && freqScale == freq_ && rotaryDim == rd_;
  }

  // cos and sin of every pair's angle for distance p >= 0: *C and *S point to rotaryDim/2
  // floats each, either inside the table or inside tmp (rotaryDim floats, the caller's).
  void coeffs(int64_t p, const float** C, const float** S, float* tmp) const;

  // The low table's row for distance p < kLo when it is already built, else nullptr: C = row,
  // S = row + rotaryDim/2. Inline, for callers that look up many rows (decode tiles); coeffs()
  // builds what is missing.
  const float* builtLowRow(int64_t p) const {
    const float* chunk = lo_[p / kChunk].load(std::memory_order_acquire);
    return chunk ? chunk + (p % kChunk) * rd_ : nullptr;
  }

  // Lane coefficients of R(-p) for Normal pairs, the form the fused decode tiles turn keys with:
  // rotaryDim cosines, each pair's in both of its lanes, then rotaryDim sines, +sin in a pair's
  // first lane and -sin in its second, so that R(-p) x = x * C + (x, each pair's lanes swapped) * S.
  // Built up front for p < kLaneRows, the distances within a tile of consecutive positions.
  static constexpr int64_t kLaneRows = 64;
  const float* laneRow(int64_t p) const { return lanes_.data() + p * 2 * rd_; }
  // The same for any p >= 0, from coeffs(), into dst (2 * rotaryDim floats).
  void laneCoeffs(int64_t p, float* dst) const;

  // The lane coefficients again, key-major, for the dense head-dim-8 decode tiles: for pair k,
  // kRunWidth cosines, then kRunWidth sines (a pair's first-lane sine, +sin). Entry u < kLaneRows
  // is for distance kLaneRows - 1 - u and the rest are 0, so that a tile of n <= kLaneRows keys at
  // consecutive positions finds key c (distance n - 1 - c) at u = kLaneRows - n + c, sixteen keys
  // in one load. Built for rotaryDim 8 only (nullptr otherwise).
  static constexpr int64_t kRunWidth = kLaneRows + 16;
  const float* runCoeffs() const { return run_.empty() ? nullptr : run_.data(); }

  // Direct double-precision values (also what the table rows hold).
  void direct(int64_t p, float* C, float* S) const;

 private:
  const float* row(int level, int64_t idx) const;  // level 0: distance idx, 1: idx * kLo

  double theta_, freq_;
  int rd_, half_;
  std::vector<double> invFreq_;   // [rd/2] freqScale * thetaBase^(-2k/rd)
  std::vector<float> lanes_;      // [kLaneRows][2 rd]
  std::vector<float> run_;        // [rd / 2][2][kRunWidth]
  static constexpr int64_t kLoChunks = kLo / kChunk;
  static constexpr int64_t kHiChunks = kHi / kChunk;
  mutable std::atomic<float*> lo_[kLoChunks];
  mutable std::atomic<float*> hi_[kHiChunks];
  mutable std::mutex buildMu_;
};

// A shared table for these parameters (built lazily, kept in a small process-wide cache).
std::shared_ptr<const RopeTable> ropeTable(double thetaBase, double freqScale, int rotaryDim);

}  // namespace lmi::attn::detail
