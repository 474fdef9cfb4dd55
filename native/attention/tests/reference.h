// A dense, deliberately plain reference for lmi::attn::run (tests only).
// For every query, head and slot it asks classify() for the branch, builds the logit
// exactly as DESIGN.md §1 says (rotating q by the branch's relative distance in double),
// keeps the top-k middle logits by sorting, and runs a double-precision softmax.
#pragma once
#include <cstdint>
#include <vector>

#include "lmi/attention.h"

namespace lmi::attn::ref {

struct Result {
  std::vector<float> out;         // [nQ][nHead][headDim]
  // [nQ][nHead]: 1 where the k-th and (k+1)-th middle logits are closer than the tie
  // tolerance, so a float kernel may legitimately keep a different key.
  std::vector<uint8_t> ambiguous;
};

// Does not validate; the problem must be well formed. p.out is ignored.
Result run(const Problem& p, double tieTolerance = 1e-4);

// IEEE binary16 <-> binary32 (round to nearest even), written independently of the kernel.
float halfToFloat(uint16_t h);
uint16_t floatToHalf(float f);

// ggml's Q8_0 rounding, written independently of the engine: each run of 32 values becomes a half
// scale d = max|x| / 127 and the integers round(x / d); n is a multiple of 32.
void quantizeQ8_0(const float* x, int64_t n, uint8_t* out);

}  // namespace lmi::attn::ref
