// Token sampling in C++, for decode runs that sample between forward passes without returning to
// JavaScript (Context::decode). It is the same procedure as lib/sampling/sampler.ts, step for step
// and in the same floating-point order, with the same PRNG, so a seed gives the same tokens
// whichever side samples; lib/sampling stays the reference and the tests compare the two.
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

namespace lmi::engine {

// sfc32 (128 bits of state). The state comes from the TypeScript Prng and goes back to it.
struct Sfc32 {
  uint32_t a = 0, b = 0, c = 0, d = 0;
  uint32_t nextUint32();
  double next();  // uniform in [0, 1) with 53 random bits (two draws)
};

// Resolved options (lib/sampling: resolveSamplingOptions); the caller has range-checked them.
struct SamplingParams {
  double temperature = 0.8;  // 0: greedy
  int64_t topK = 40;         // 0: off
  double topP = 0.95;        // 1: off
  double minP = 0.05;        // 0: off
  double repeatPenalty = 1.0;
  double presencePenalty = 0.0;
  double frequencyPenalty = 0.0;
  int64_t penaltyLastN = 64;
  std::vector<std::pair<int32_t, double>> logitBias;  // distinct ids in [0, nVocab); -Infinity bans
};

// Penalties over the recent tokens → logit bias → (temperature 0: argmax) → temperature → top-k →
// top-p → min-p → a draw from rng. Reuses its buffers: no allocation per token after the first.
class TokenSampler {
 public:
  TokenSampler(SamplingParams params, int64_t nVocab);
  TokenSampler() = default;
  // New options or vocabulary size; the buffers are kept (they only grow).
  void reset(SamplingParams params, int64_t nVocab);

  // recent: the stream's latest tokens, oldest first (only the last penaltyLastN are used).
  // Returns -1 where the TypeScript sampler would not simply return an id: a logit that is NaN or
  // +Infinity, or no logit left above -Infinity (it throws, or its filters treat NaN in their own
  // way). The caller then hands this row to the TypeScript sampler, with rng untouched.
  int32_t sample(const float* logits, const int32_t* recent, int64_t nRecent, Sfc32& rng);

 private:
  // softmax over the candidates (ids ascending), in double, into probs_ (indexed like cand_).
  void softmaxCandidates();
  // Keeps the candidates at the given indices of cand_ (any order), ids ascending afterwards.
  void keepCandidates(const std::vector<int32_t>& keepIdx);
  // Indices into cand_, best first (logit descending, lower id on ties).
  void rankCandidates(std::vector<int32_t>* order, int64_t count);

  SamplingParams p_;
  int64_t nVocab_ = 0;
  std::vector<float> l_;          // the row being transformed
  std::vector<int32_t> cand_;     // ids whose logit is not -Infinity, ascending
  std::vector<double> probs_;     // softmax over cand_
  std::vector<int32_t> order_, keep_;
  std::vector<std::pair<int32_t, int32_t>> counts_;  // penalties: (id, occurrences)
};

}  // namespace lmi::engine
