#include "decode_request.h"

#include <cmath>
#include <string>

#include "js_args.h"
#include "mask_args.h"

namespace lmi::napi {

namespace {

template <typename T>
std::vector<T> copyTyped(const Napi::TypedArray& a) {
  const T* data = reinterpret_cast<const T*>(static_cast<const uint8_t*>(a.ArrayBuffer().Data()) + a.ByteOffset());
  return std::vector<T>(data, data + a.ElementLength());
}

double requireRange(const Napi::Object& o, const char* name, double min, double max) {
  const double v = requireNumber(o, name);
  if (!(v >= min && v <= max))
    throw ArgError(std::string("'") + name + "' must be in [" + std::to_string(min) + ", " + std::to_string(max) + "]");
  return v;
}

}  // namespace

void parseDecodeRequest(const Napi::Object& o, int64_t nVocab, DecodeRequest* out) {
  DecodeRequest& q = *out;
  engine::DecodeRun& r = q.run;
  r.token = static_cast<int32_t>(requireInteger(o, "token", 0, nVocab - 1));
  q.positions = copyTyped<int64_t>(requireTypedArray(o, "positions", napi_bigint64_array, "BigInt64Array"));
  q.slots = copyTyped<int32_t>(requireTypedArray(o, "slots", napi_int32_array, "Int32Array"));
  if (q.positions.size() != q.slots.size())
    throw ArgError("positions and slots must have the same length (" + std::to_string(q.positions.size()) + ", " +
                   std::to_string(q.slots.size()) + ")");
  q.slotPositions = copyTyped<int64_t>(requireTypedArray(o, "slotPositions", napi_bigint64_array, "BigInt64Array"));
  q.recent = copyTyped<int32_t>(requireTypedArray(o, "recent", napi_int32_array, "Int32Array"));
  q.endAfter = copyTyped<uint8_t>(requireTypedArray(o, "endAfter", napi_uint8_array, "Uint8Array"));
  if (static_cast<int64_t>(q.endAfter.size()) != nVocab)
    throw ArgError("'endAfter' must have nVocab = " + std::to_string(nVocab) + " entries, got " +
                   std::to_string(q.endAfter.size()));

  r.mask = parseLambdaMask(requireObject(requireField(o, "mask"), "mask"));
  r.budgetSeconds = requireRange(o, "budgetMs", 0, 3.6e6) / 1000.0;

  Napi::Object s = requireObject(requireField(o, "sampling"), "sampling");
  engine::SamplingParams& p = q.sampling;
  p.temperature = requireRange(s, "temperature", 0, 1e300);
  p.topK = requireInteger(s, "topK", 0, int64_t(1) << 40);
  p.topP = requireNumber(s, "topP");
  if (!(p.topP > 0 && p.topP <= 1)) throw ArgError("'topP' must be in (0, 1]");
  p.minP = requireRange(s, "minP", 0, 1);
  p.repeatPenalty = requireNumber(s, "repeatPenalty");
  if (!(p.repeatPenalty > 0)) throw ArgError("'repeatPenalty' must be > 0");
  p.presencePenalty = requireNumber(s, "presencePenalty");
  p.frequencyPenalty = requireNumber(s, "frequencyPenalty");
  p.penaltyLastN = requireInteger(s, "penaltyLastN", 0, int64_t(1) << 20);
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

  Napi::TypedArray rng = requireTypedArray(o, "rngState", napi_uint32_array, "Uint32Array");
  if (rng.ElementLength() != 4) throw ArgError("'rngState' must hold 4 words");
  const std::vector<uint32_t> st = copyTyped<uint32_t>(rng);
  q.rng = {st[0], st[1], st[2], st[3]};

  r.maxSteps = static_cast<int64_t>(q.positions.size());
  r.positions = q.positions.data();
  r.slots = q.slots.data();
  r.slotPositions = q.slotPositions.data();
  r.nSlotPositions = static_cast<int64_t>(q.slotPositions.size());
  r.recent = q.recent.data();
  r.nRecent = static_cast<int64_t>(q.recent.size());
  r.endAfter = q.endAfter.data();
}

}  // namespace lmi::napi
