#include "decode_request.h"

#include <string>

#include "js_args.h"
#include "mask_args.h"
#include "sampling_binding.h"

namespace lmi::napi {

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
  r.budgetSeconds = requireNumberIn(o, "budgetMs", 0, 3.6e6) / 1000.0;

  q.sampling = parseSamplingParams(requireObject(requireField(o, "sampling"), "sampling"), nVocab);
  q.rng = parseRngState(o);

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
