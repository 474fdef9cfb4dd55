// The TypeScript sampler (lib/sampling) in C++. Each step keeps the TypeScript one's arithmetic:
// logits stay float32 between steps (a step computes in double and rounds when it stores),
// probabilities are double, and sums run over ids in ascending order. Ids at -Infinity are
// dropped from the candidate list instead of being carried as zeros; adding exp(-Infinity) = 0 to
// a sum changes nothing, so the sums are the same.
#include "lmi/sampling.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace lmi::engine {

uint32_t Sfc32::nextUint32() {
  const uint32_t t = a + b + d;
  d = d + 1;
  a = b ^ (b >> 9);
  b = c + (c << 3);
  c = (c << 21) | (c >> 11);
  c = c + t;
  return t;
}

double Sfc32::next() {
  const uint32_t hi = nextUint32() >> 5;  // 27 bits
  const uint32_t lo = nextUint32() >> 6;  // 26 bits
  return (static_cast<double>(hi) * 67108864.0 + static_cast<double>(lo)) / 9007199254740992.0;
}

TokenSampler::TokenSampler(SamplingParams params, int64_t nVocab) { reset(std::move(params), nVocab); }

void TokenSampler::reset(SamplingParams params, int64_t nVocab) {
  p_ = std::move(params);
  nVocab_ = nVocab;
  if (static_cast<int64_t>(l_.size()) < nVocab) l_.resize(static_cast<size_t>(nVocab));
  cand_.reserve(static_cast<size_t>(nVocab));
  probs_.reserve(static_cast<size_t>(nVocab));
}

void TokenSampler::softmaxCandidates() {
  double max = -std::numeric_limits<double>::infinity();
  for (int32_t id : cand_)
    if (l_[id] > max) max = l_[id];
  probs_.resize(cand_.size());
  double sum = 0;
  for (size_t i = 0; i < cand_.size(); i++) {
    const double e = std::exp(static_cast<double>(l_[cand_[i]]) - max);
    probs_[i] = e;
    sum += e;
  }
  for (double& x : probs_) x /= sum;
}

void TokenSampler::keepCandidates(const std::vector<int32_t>& keepIdx) {
  // Everything else goes to -Infinity; cand_ keeps ascending ids.
  keep_.assign(keepIdx.begin(), keepIdx.end());
  std::sort(keep_.begin(), keep_.end());
  size_t w = 0, k = 0;
  for (size_t i = 0; i < cand_.size(); i++) {
    if (k < keep_.size() && static_cast<size_t>(keep_[k]) == i) {
      cand_[w++] = cand_[i];
      k++;
    } else {
      l_[cand_[i]] = -std::numeric_limits<float>::infinity();
    }
  }
  cand_.resize(w);
}

void TokenSampler::rankCandidates(std::vector<int32_t>* order, int64_t count) {
  order->resize(cand_.size());
  for (size_t i = 0; i < cand_.size(); i++) (*order)[i] = static_cast<int32_t>(i);
  auto better = [&](int32_t x, int32_t y) {
    const float lx = l_[cand_[x]], ly = l_[cand_[y]];
    return lx != ly ? lx > ly : cand_[x] < cand_[y];
  };
  const size_t n = static_cast<size_t>(std::min<int64_t>(count, static_cast<int64_t>(cand_.size())));
  std::partial_sort(order->begin(), order->begin() + static_cast<std::ptrdiff_t>(n), order->end(), better);
  order->resize(n);
}

int32_t TokenSampler::sample(const float* logits, const int32_t* recent, int64_t nRecent, Sfc32& rng) {
  const float negInf = -std::numeric_limits<float>::infinity();
  std::copy(logits, logits + nVocab_, l_.begin());

  // Penalties (applyPenalties): per id seen c times in the window.
  const int64_t n = std::min(p_.penaltyLastN, nRecent);
  const bool penalize = p_.repeatPenalty != 1 || p_.presencePenalty != 0 || p_.frequencyPenalty != 0;
  if (n > 0 && penalize) {
    counts_.clear();
    for (int64_t k = nRecent - n; k < nRecent; k++)
      if (recent[k] >= 0 && recent[k] < nVocab_) counts_.emplace_back(recent[k], 1);
    std::sort(counts_.begin(), counts_.end());
    size_t w = 0;
    for (size_t i = 0; i < counts_.size(); i++) {
      if (w > 0 && counts_[w - 1].first == counts_[i].first) counts_[w - 1].second++;
      else counts_[w++] = counts_[i];
    }
    counts_.resize(w);
    for (const auto& [id, c] : counts_) {
      double l = l_[id];
      if (l == -std::numeric_limits<double>::infinity()) continue;
      l = l > 0 ? l / p_.repeatPenalty : l * p_.repeatPenalty;
      l_[id] = static_cast<float>(l - c * p_.frequencyPenalty - p_.presencePenalty);
    }
  }
  for (const auto& [id, b] : p_.logitBias) l_[id] = static_cast<float>(static_cast<double>(l_[id]) + b);

  // Candidates; NaN or +Infinity anywhere: the TypeScript sampler decides.
  cand_.clear();
  for (int64_t i = 0; i < nVocab_; i++) {
    const float v = l_[i];
    if (std::isnan(v) || v == std::numeric_limits<float>::infinity()) return -1;
    if (v != negInf) cand_.push_back(static_cast<int32_t>(i));
  }
  if (cand_.empty()) return -1;

  if (p_.temperature == 0) {  // argmax, lowest id on ties
    int32_t best = cand_[0];
    for (int32_t id : cand_)
      if (l_[id] > l_[best]) best = id;
    return best;
  }
  // Dividing by a temperature below 1 can overflow a float: +Infinity goes to the TypeScript
  // sampler (it throws), -Infinity drops out as it does there.
  {
    size_t w = 0;
    for (int32_t id : cand_) {
      const float t = static_cast<float>(static_cast<double>(l_[id]) / p_.temperature);
      if (t == std::numeric_limits<float>::infinity()) return -1;
      l_[id] = t;
      if (t != negInf) cand_[w++] = id;
    }
    cand_.resize(w);
    if (cand_.empty()) return -1;
  }

  if (p_.topK > 0 && p_.topK < nVocab_) {
    rankCandidates(&order_, p_.topK);
    keepCandidates(order_);
  }
  if (p_.topP < 1) {
    softmaxCandidates();
    rankCandidates(&order_, static_cast<int64_t>(cand_.size()));
    double cumulative = 0;
    size_t kept = 0;
    while (kept < order_.size()) {
      cumulative += probs_[order_[kept]];
      kept++;
      if (cumulative >= p_.topP) break;
    }
    order_.resize(kept);
    keepCandidates(order_);
  }
  if (p_.minP > 0) {
    softmaxCandidates();
    double best = 0;
    for (double x : probs_)
      if (x > best) best = x;
    order_.clear();
    for (size_t i = 0; i < cand_.size(); i++)
      if (!(probs_[i] < p_.minP * best)) order_.push_back(static_cast<int32_t>(i));
    keepCandidates(order_);
  }

  // sampleFromLogits: the first id (ascending) whose cumulative probability exceeds u.
  const double u = rng.next();
  softmaxCandidates();
  double cumulative = 0;
  int32_t last = -1;
  for (size_t i = 0; i < cand_.size(); i++) {
    if (probs_[i] == 0) continue;
    cumulative += probs_[i];
    last = cand_[i];
    if (u < cumulative) return cand_[i];
  }
  return last;
}

}  // namespace lmi::engine
