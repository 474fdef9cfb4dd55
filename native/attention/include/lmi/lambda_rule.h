// The LM-Infinite attention rule (DESIGN.md §1) as one pure function.
// Every kernel, the dense reference and the tests derive masking from here;
// lib/attention/rule.ts mirrors it and the tests cross-check the two.
#pragma once
#include <cstdint>

namespace lmi::attn {

enum class Branch : int8_t {
  Masked = 0,  // not attended (-inf)
  Local = 1,   // d < nLocal: true relative distance d
  Global = 2,  // one of the first nGlobal tokens of the stream: distance capped at L
  Middle = 3,  // neither: a candidate for top-k middle attention (masked when top-k is off)
};

struct LambdaMask {
  bool lambda = true;         // false: vanilla causal attention (every key j <= i is Local)
  int64_t origin = 0;         // absolute position of the stream's first token
  int64_t nGlobal = 10;       // keys at j - origin < nGlobal are global
  int64_t nLocal = 512;       // keys at distance d < nLocal are local
  int64_t limitDistance = 512;// the cap: L = min(limitDistance, i - origin)
};

// Which branch a query at absolute position i takes for a key at absolute position j.
inline constexpr Branch classify(int64_t i, int64_t j, const LambdaMask& m) {
  if (j > i) return Branch::Masked;
  if (!m.lambda) return Branch::Local;
  const int64_t d = i - j;
  if (d < m.nLocal) return Branch::Local;
  if (j - m.origin < m.nGlobal) return Branch::Global;
  return Branch::Middle;
}

// The capped distance used by the global branch.
inline constexpr int64_t globalDistance(int64_t i, const LambdaMask& m) {
  const int64_t sinceOrigin = i - m.origin;
  return sinceOrigin < m.limitDistance ? sinceOrigin : m.limitDistance;
}

}  // namespace lmi::attn
