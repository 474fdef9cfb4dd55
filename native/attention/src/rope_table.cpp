#include "rope_table.h"

#include <cmath>

namespace lmi::attn::detail {

RopeTable::RopeTable(double thetaBase, double freqScale, int rotaryDim)
    : theta_(thetaBase), freq_(freqScale), rd_(rotaryDim), half_(rotaryDim / 2) {
  invFreq_.resize(half_);
  for (int k = 0; k < half_; k++) invFreq_[k] = freqScale * std::pow(thetaBase, -2.0 * k / rd_);
  for (auto& c : lo_) c.store(nullptr, std::memory_order_relaxed);
  for (auto& c : hi_) c.store(nullptr, std::memory_order_relaxed);
  lanes_.resize(static_cast<size_t>(kLaneRows) * 2 * rd_);
  for (int64_t p = 0; p < kLaneRows; p++) laneCoeffs(p, lanes_.data() + p * 2 * rd_);
  if (rd_ == 8) {
    run_.assign(static_cast<size_t>(half_) * 2 * kRunWidth, 0.0f);
    for (int k = 0; k < half_; k++)
      for (int64_t u = 0; u < kLaneRows; u++) {
        const float* lane = laneRow(kLaneRows - 1 - u);
        run_[(2 * k) * kRunWidth + u] = lane[2 * k];
        run_[(2 * k + 1) * kRunWidth + u] = lane[rd_ + 2 * k];
      }
  }
}

RopeTable::~RopeTable() {
  for (auto& c : lo_) delete[] c.load();
  for (auto& c : hi_) delete[] c.load();
}

void RopeTable::direct(int64_t p, float* C, float* S) const {
  const double dp = static_cast<double>(p);
  for (int k = 0; k < half_; k++) {
    const double a = dp * invFreq_[k];
    C[k] = static_cast<float>(std::cos(a));
    S[k] = static_cast<float>(std::sin(a));
  }
}

const float* RopeTable::row(int level, int64_t idx) const {
  std::atomic<float*>* chunks = level == 0 ? lo_ : hi_;
  const int64_t ci = idx / kChunk;
  float* chunk = chunks[ci].load(std::memory_order_acquire);
  if (!chunk) {
    std::lock_guard<std::mutex> lock(buildMu_);
    chunk = chunks[ci].load(std::memory_order_relaxed);
    if (!chunk) {
      chunk = new float[static_cast<size_t>(kChunk) * rd_];
      const int64_t unit = level == 0 ? 1 : kLo;
      for (int64_t r = 0; r < kChunk; r++) {
        float* dst = chunk + r * rd_;
        direct((ci * kChunk + r) * unit, dst, dst + half_);
      }
      chunks[ci].store(chunk, std::memory_order_release);
    }
  }
  return chunk + (idx % kChunk) * rd_;
}

void RopeTable::coeffs(int64_t p, const float** C, const float** S, float* tmp) const {
  if (p < kLo) {
    const float* r = row(0, p);
    *C = r;
    *S = r + half_;
    return;
  }
  float* tc = tmp;
  float* ts = tmp + half_;
  if (p < kLo * kHi) {
    // R(a + b) = R(a) R(b): cos(a+b) = ca cb - sa sb, sin(a+b) = sa cb + ca sb
    const float* a = row(1, p / kLo);
    const float* b = row(0, p % kLo);
    const float* ca = a;
    const float* sa = a + half_;
    const float* cb = b;
    const float* sb = b + half_;
    for (int d = 0; d < half_; d++) {
      tc[d] = ca[d] * cb[d] - sa[d] * sb[d];
      ts[d] = sa[d] * cb[d] + ca[d] * sb[d];
    }
  } else {
    direct(p, tc, ts);
  }
  *C = tc;
  *S = ts;
}

void RopeTable::laneCoeffs(int64_t p, float* dst) const {
  float* lc = dst;
  float* ls = dst + rd_;
  const float* C;
  const float* S;
  coeffs(p, &C, &S, lc);  // computed ones land in lc: the sines are spread first, then the cosines
  for (int k = 0; k < half_; k++) {
    ls[2 * k] = S[k];
    ls[2 * k + 1] = -S[k];
  }
  for (int k = half_ - 1; k >= 0; k--) lc[2 * k] = lc[2 * k + 1] = C[k];  // C[j < k] is not yet overwritten
}

std::shared_ptr<const RopeTable> ropeTable(double thetaBase, double freqScale, int rotaryDim) {
  static std::mutex mu;
  static std::vector<std::shared_ptr<const RopeTable>> cache;  // most recently used last
  constexpr size_t kMaxCached = 16;
  std::lock_guard<std::mutex> lock(mu);
  for (size_t i = 0; i < cache.size(); i++) {
    if (cache[i]->matches(thetaBase, freqScale, rotaryDim)) {
      auto t = cache[i];
      if (i + 1 != cache.size()) {
        cache.erase(cache.begin() + static_cast<std::ptrdiff_t>(i));
        cache.push_back(t);
      }
      return t;
    }
  }
  auto t = std::make_shared<const RopeTable>(thetaBase, freqScale, rotaryDim);
  if (cache.size() >= kMaxCached) cache.erase(cache.begin());  // users keep theirs alive
  cache.push_back(t);
  return t;
}

}  // namespace lmi::attn::detail
