// The addon's module: one registration per binding. lib/native/types.ts restates this surface in TypeScript.
#include <napi.h>

#if !defined(_WIN32)
#include <dlfcn.h>
#endif

#include "attention_binding.h"
#include "js_args.h"
#include "model_binding.h"
#include "quantize_binding.h"
#include "sampling_binding.h"
#include "system_binding.h"

namespace {

#if !defined(_WIN32)
// Keeps this library mapped for the life of the process. Node unloads an addon when the last
// environment that loaded it goes away (a worker thread that exits), but each context's compute
// thread (eval_thread.h) may still be finishing a job or sleeping in this library's code then.
void pinModule() {
  static const bool pinned = [] {
    Dl_info info;
    if (dladdr(reinterpret_cast<void*>(&pinModule), &info) == 0 || info.dli_fname == nullptr) return false;
    return dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE) != nullptr;
  }();
  (void)pinned;
}
#else
void pinModule() {}
#endif

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  pinModule();
  // A worker thread terminated while it loads the addon makes these JS calls fail; the error must
  // not leave Init (node-addon-api would rethrow it into the dying environment and abort).
  lmi::napi::settleQuietly([&] {
    exports.Set("attention", Napi::Function::New(env, lmi::napi::Attention, "attention"));
    exports.Set("classify", Napi::Function::New(env, lmi::napi::Classify, "classify"));
    exports.Set("cpuHasAvx2Fma", Napi::Function::New(env, lmi::napi::CpuHasAvx2Fma, "cpuHasAvx2Fma"));
    exports.Set("loadModel", Napi::Function::New(env, lmi::napi::LoadModel, "loadModel"));
    exports.Set("quantize", Napi::Function::New(env, lmi::napi::Quantize, "quantize"));
    exports.Set("sampleToken", Napi::Function::New(env, lmi::napi::SampleToken, "sampleToken"));
    exports.Set("systemInfo", Napi::Function::New(env, lmi::napi::SystemInfo, "systemInfo"));
  });
  return exports;
}
}  // namespace

NODE_API_MODULE(lm_infinite, Init)
