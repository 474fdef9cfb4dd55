// The argument of NativeContext.decode(request), read on the JS thread into memory the request owns
// (the run happens later, on the context's compute thread).
#pragma once
#include <napi.h>

#include <cstdint>
#include <vector>

#include "lmi/engine.h"
#include "lmi/sampling.h"

namespace lmi::napi {

struct DecodeRequest {
  engine::DecodeRun run;  // its pointers point into the vectors below
  engine::SamplingParams sampling;
  engine::Sfc32 rng;
  std::vector<int64_t> positions;
  std::vector<int32_t> slots;
  std::vector<int64_t> slotPositions;
  std::vector<int32_t> recent;
  std::vector<uint8_t> endAfter;

  DecodeRequest() = default;
  DecodeRequest(const DecodeRequest&) = delete;
  DecodeRequest& operator=(const DecodeRequest&) = delete;
};

// Throws ArgError for a malformed request; the engine checks the run itself (Context::checkDecode).
// nVocab sizes endAfter and bounds the logit-bias ids.
void parseDecodeRequest(const Napi::Object& o, int64_t nVocab, DecodeRequest* out);

}  // namespace lmi::napi
