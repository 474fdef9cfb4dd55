#pragma once
#include <napi.h>

namespace lmi::napi {
// loadModel(spec) -> Promise<NativeModel>; see lib/native/types.ts (NativeEngine). The model's
// createContext(options) -> NativeContext, whose eval(batch) -> Promise<Float32Array>.
Napi::Value LoadModel(const Napi::CallbackInfo& info);
}  // namespace lmi::napi
