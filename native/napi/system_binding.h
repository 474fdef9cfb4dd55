#pragma once
#include <napi.h>

namespace lmi::napi {
// systemInfo() -> { ggmlVersion, cpu: {...}, attentionSimd }
Napi::Value SystemInfo(const Napi::CallbackInfo& info);
}  // namespace lmi::napi
