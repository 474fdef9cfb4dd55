// Argument checking shared by the kernel's entry points: the error every check raises, number
// formatting for its messages, overflow-safe sizes, and the checks of a Problem that read no array
// it points to (the only ones the CUDA entry point can make: its pointers are device pointers).
#pragma once
#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>

#include "lmi/attention.h"

namespace lmi::attn::detail {

constexpr int64_t kMaxPos = int64_t(1) << 61;  // positions, origin, distances: |x| <= 2^61

[[noreturn]] inline void fail(const std::string& msg) { throw InvalidArgument("lmi attention: " + msg); }

inline std::string str(int64_t v) { return std::to_string(v); }

inline std::string str(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

// *out = a * b for a, b >= 0; true when that overflows int64.
inline bool mulOverflows(int64_t a, int64_t b, int64_t* out) {
  if (a < 0 || b < 0 || (a != 0 && b > std::numeric_limits<int64_t>::max() / a)) return true;
  *out = a * b;
  return false;
}

// Every check of validate() except the values behind the pointers (ALiBi slopes, query and slot
// positions): sizes (headDim <= maxHeadDim), strides, options, null pointers, the encoding.
void validateShape(const Problem& p, int maxHeadDim);

}  // namespace lmi::attn::detail
