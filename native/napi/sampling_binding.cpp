#include "sampling_binding.h"

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "js_args.h"

namespace lmi::napi {

engine::SamplingParams parseSamplingParams(const Napi::Object& s, int64_t nVocab) {
  engine::SamplingParams p;
  // The ranges lib/sampling accepts (resolveSamplingOptions), so that no option it takes is refused here.
  p.temperature = requireNumberIn(s, "temperature", 0, std::numeric_limits<double>::max());
  p.topK = requireInteger(s, "topK", 0, (int64_t(1) << 53) - 1);
  p.topP = requireNumber(s, "topP");
  if (!(p.topP > 0 && p.topP <= 1)) throw ArgError("'topP' must be in (0, 1]");
  p.minP = requireNumberIn(s, "minP", 0, 1);
  p.repeatPenalty = requireNumber(s, "repeatPenalty");
  if (!(p.repeatPenalty > 0)) throw ArgError("'repeatPenalty' must be > 0");
  p.presencePenalty = requireNumber(s, "presencePenalty");
  p.frequencyPenalty = requireNumber(s, "frequencyPenalty");
  p.penaltyLastN = requireInteger(s, "penaltyLastN", 0, (int64_t(1) << 53) - 1);
  Napi::TypedArray biasIds = requireTypedArray(s, "biasIds", napi_int32_array, "Int32Array");
  Napi::TypedArray biasValues = requireTypedArray(s, "biasValues", napi_float64_array, "Float64Array");
  if (biasIds.ElementLength() != biasValues.ElementLength())
    throw ArgError("biasIds and biasValues must have the same length");
  const std::vector<int32_t> ids = copyTyped<int32_t>(biasIds);
  const std::vector<double> values = copyTyped<double>(biasValues);
  for (size_t i = 0; i < ids.size(); i++) {
    if (ids[i] < 0 || ids[i] >= nVocab) throw ArgError("biasIds[" + std::to_string(i) + "] is not a token id");
    if (std::isnan(values[i]) || values[i] == INFINITY)
      throw ArgError("biasValues[" + std::to_string(i) + "] must be finite or -Infinity");
    p.logitBias.emplace_back(ids[i], values[i]);
  }
  return p;
}

engine::Sfc32 parseRngState(const Napi::Object& o) {
  Napi::TypedArray rng = requireTypedArray(o, "rngState", napi_uint32_array, "Uint32Array");
  if (rng.ElementLength() != 4) throw ArgError("'rngState' must hold 4 words");
  const std::vector<uint32_t> st = copyTyped<uint32_t>(rng);
  return {st[0], st[1], st[2], st[3]};
}

Napi::Value SampleToken(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  try {
    if (info.Length() < 1) throw ArgError("sampleToken(args) expects one argument");
    Napi::Object o = requireObject(info[0], "args");
    // Sessions call this once per token when they evaluate one token per call: the row is read in
    // place and the sampler's buffers are reused (one per thread), so nothing vocabulary-sized is
    // allocated per token.
    Napi::TypedArray logits = requireTypedArray(o, "logits", napi_float32_array, "Float32Array");
    if (logits.ElementLength() == 0) throw ArgError("'logits' is empty");
    const int64_t nVocab = static_cast<int64_t>(logits.ElementLength());
    engine::SamplingParams params = parseSamplingParams(requireObject(requireField(o, "sampling"), "sampling"), nVocab);
    engine::Sfc32 rng = parseRngState(o);
    const std::vector<int32_t> recent = copyTyped<int32_t>(requireTypedArray(o, "recent", napi_int32_array, "Int32Array"));
    thread_local engine::TokenSampler sampler;
    sampler.reset(std::move(params), nVocab);
    const float* row = reinterpret_cast<const float*>(static_cast<const uint8_t*>(logits.ArrayBuffer().Data()) +
                                                      logits.ByteOffset());
    const int32_t token = sampler.sample(row, recent.data(), static_cast<int64_t>(recent.size()), rng);
    Napi::Object r = Napi::Object::New(env);
    r.Set("token", static_cast<double>(token));
    Napi::Uint32Array state = Napi::Uint32Array::New(env, 4);
    state[0] = rng.a;
    state[1] = rng.b;
    state[2] = rng.c;
    state[3] = rng.d;
    r.Set("rngState", state);
    return r;
  } catch (const ArgError& e) {
    settleQuietly([&] { makeError(env, "INVALID_ARGUMENT", e.what()).ThrowAsJavaScriptException(); });
  } catch (const std::exception& e) {
    settleQuietly([&] { makeError(env, "NATIVE", e.what()).ThrowAsJavaScriptException(); });
  }
  return env.Undefined();
}

}  // namespace lmi::napi
