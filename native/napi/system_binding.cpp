#include "system_binding.h"

#include "ggml-cpu.h"
#include "ggml.h"
#include "lmi/attention.h"

namespace lmi::napi {

Napi::Value SystemInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object result = Napi::Object::New(env);
  result.Set("ggmlVersion", ggml_version());
  Napi::Object cpu = Napi::Object::New(env);
  cpu.Set("avx", ggml_cpu_has_avx() != 0);
  cpu.Set("avx2", ggml_cpu_has_avx2() != 0);
  cpu.Set("fma", ggml_cpu_has_fma() != 0);
  cpu.Set("f16c", ggml_cpu_has_f16c() != 0);
  cpu.Set("avx512", ggml_cpu_has_avx512() != 0);
  cpu.Set("neon", ggml_cpu_has_neon() != 0);
  result.Set("cpu", cpu);
  result.Set("attentionSimd", lmi::attn::cpuHasAvx2Fma() ? "avx2+fma" : "portable");
  return result;
}

}  // namespace lmi::napi
