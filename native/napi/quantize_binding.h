#pragma once
#include <napi.h>

namespace lmi::napi {
// quantize(type, data: Float32Array, nPerRow) -> Uint8Array: ggml's own quantizer
// (ggml_quantize_chunk, no importance matrix) for the weight types the engine computes.
// Synchronous; meant for tests and tools that build small models.
Napi::Value Quantize(const Napi::CallbackInfo& info);
}  // namespace lmi::napi
