// The native sampler's options from JS (NativeSamplingParams), and sampleToken(), which runs the
// sampler on one row: what decode runs use between forward passes, exposed so that tests can hold
// it against lib/sampling on rows of their choosing.
#pragma once
#include <napi.h>

#include <cstdint>

#include "lmi/sampling.h"

namespace lmi::napi {

// Throws ArgError naming the field; nVocab bounds the logit-bias ids.
engine::SamplingParams parseSamplingParams(const Napi::Object& s, int64_t nVocab);
// o.rngState: a Uint32Array of the 4 sfc32 words.
engine::Sfc32 parseRngState(const Napi::Object& o);

// sampleToken({ logits: Float32Array, sampling, rngState, recent: Int32Array })
//   -> { token (-1: left to the TypeScript sampler), rngState }. Synchronous: one row's work.
Napi::Value SampleToken(const Napi::CallbackInfo& info);

}  // namespace lmi::napi
