// The Λ mask as every binding takes it from JS: { lambda, origin, nGlobal, nLocal, limitDistance }.
#pragma once
#include <napi.h>

#include <cstdint>

#include "js_args.h"
#include "lmi/lambda_rule.h"

namespace lmi::napi {

// Positions and distances JS hands over exactly (doubles hold integers up to 2^53).
constexpr int64_t kMaxJsPosition = int64_t(1) << 52;

// Throws ArgError naming the field.
inline attn::LambdaMask parseLambdaMask(const Napi::Object& mask) {
  attn::LambdaMask m;
  m.lambda = requireBool(mask, "lambda");
  m.origin = requireInteger(mask, "origin", 0, kMaxJsPosition);
  m.nGlobal = requireInteger(mask, "nGlobal", 0, kMaxJsPosition);
  m.nLocal = requireInteger(mask, "nLocal", 1, kMaxJsPosition);
  m.limitDistance = requireInteger(mask, "limitDistance", 0, kMaxJsPosition);
  return m;
}

}  // namespace lmi::napi
