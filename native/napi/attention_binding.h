#pragma once
#include <napi.h>

namespace lmi::napi {
// attention(args) -> Promise<Float32Array>; see lib/native/types.ts for the argument shape.
Napi::Value Attention(const Napi::CallbackInfo& info);
// classify(i: BigInt64Array, j: BigInt64Array, mask) -> Int8Array of lmi::attn::Branch values
Napi::Value Classify(const Napi::CallbackInfo& info);
Napi::Value CpuHasAvx2Fma(const Napi::CallbackInfo& info);
}  // namespace lmi::napi
