// The addon's module: one registration per binding. lib/native/types.ts restates this surface in TypeScript.
#include <napi.h>

#include "attention_binding.h"
#include "model_binding.h"
#include "quantize_binding.h"
#include "system_binding.h"

namespace {
Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("attention", Napi::Function::New(env, lmi::napi::Attention, "attention"));
  exports.Set("classify", Napi::Function::New(env, lmi::napi::Classify, "classify"));
  exports.Set("cpuHasAvx2Fma", Napi::Function::New(env, lmi::napi::CpuHasAvx2Fma, "cpuHasAvx2Fma"));
  exports.Set("loadModel", Napi::Function::New(env, lmi::napi::LoadModel, "loadModel"));
  exports.Set("quantize", Napi::Function::New(env, lmi::napi::Quantize, "quantize"));
  exports.Set("systemInfo", Napi::Function::New(env, lmi::napi::SystemInfo, "systemInfo"));
  return exports;
}
}  // namespace

NODE_API_MODULE(lm_infinite, Init)
