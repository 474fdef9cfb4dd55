#include "system_binding.h"

#include "ggml-cpu.h"
#include "ggml.h"
#include "js_args.h"
#include "lmi/attention.h"
#include "lmi/engine.h"

namespace lmi::napi {

namespace {

Napi::Value systemInfo(Napi::Env env) {
  Napi::Object result = Napi::Object::New(env);
  result.Set("ggmlVersion", ggml_version());
  Napi::Object cpu = Napi::Object::New(env);
  cpu.Set("avx", ggml_cpu_has_avx() != 0);
  cpu.Set("avx2", ggml_cpu_has_avx2() != 0);
  cpu.Set("fma", ggml_cpu_has_fma() != 0);
  cpu.Set("f16c", ggml_cpu_has_f16c() != 0);
  cpu.Set("avx512", ggml_cpu_has_avx512() != 0);
  cpu.Set("neon", ggml_cpu_has_neon() != 0);
  cpu.Set("amxInt8", ggml_cpu_has_amx_int8() != 0);
  result.Set("cpu", cpu);
  result.Set("attentionSimd", lmi::attn::cpuHasAvx2Fma() ? "avx2+fma" : "portable");
  // What loadModel(path, { gpu }) can use: a CUDA build (LMI_CUDA) and a visible device.
  const lmi::engine::GpuInfo g = lmi::engine::gpuInfo();
  Napi::Object gpu = Napi::Object::New(env);
  gpu.Set("compiled", g.compiled);
  gpu.Set("deviceCount", g.deviceCount);
  gpu.Set("name", g.name);
  gpu.Set("description", g.description);
  gpu.Set("memoryTotal", static_cast<double>(g.memoryTotal));
  gpu.Set("memoryFree", static_cast<double>(g.memoryFree));
  const std::string why = lmi::engine::gpuUnavailableReason();
  if (why.empty()) gpu.Set("unavailableReason", env.Null());
  else gpu.Set("unavailableReason", why);
  result.Set("gpu", gpu);
  return result;
}

}  // namespace

Napi::Value SystemInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Value result = env.Undefined();
  settleQuietly([&] { result = systemInfo(env); });  // fails only while the environment terminates
  return result;
}

}  // namespace lmi::napi
