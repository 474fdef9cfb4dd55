// ggml's quantizer, exposed so tests can build weights in every type the engine computes
// (K-quants included) exactly as llama.cpp's own quantize tool writes them. Runs on the JS thread:
// it is for small test models, not for converting real ones.
#include "quantize_binding.h"

#include <cstdint>
#include <string>

#include "ggml.h"
#include "js_args.h"
#include "lmi/engine.h"

namespace lmi::napi {
// Every type the engine computes (lmi::engine::isComputableType) quantizes without an importance matrix.
using engine::isComputableType;
using engine::typeLabel;

Napi::Value Quantize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  try {
    if (info.Length() != 3) throw ArgError("quantize(type, data, nPerRow) expects three arguments");
    if (!info[0].IsNumber()) throw ArgError("quantize: 'type' must be a ggml type number");
    const double typeNumber = info[0].As<Napi::Number>().DoubleValue();
    if (!(typeNumber >= 0 && typeNumber < 1024) || typeNumber != static_cast<double>(static_cast<int>(typeNumber)))
      throw ArgError("quantize: 'type' must be a ggml type number");
    const int type = static_cast<int>(typeNumber);
    if (!isComputableType(type)) {
      Napi::Error err = makeError(env, "UNSUPPORTED",
                                  "quantize: " + typeLabel(type) +
                                      " is not one of the types the engine computes (F32, F16, BF16, Q4_0, Q4_1, "
                                      "Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K)");
      err.ThrowAsJavaScriptException();
      return env.Undefined();
    }
    if (!info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
      throw ArgError("quantize: 'data' must be a Float32Array");
    Napi::Float32Array data = info[1].As<Napi::Float32Array>();
    if (!info[2].IsNumber()) throw ArgError("quantize: 'nPerRow' must be a positive integer");
    const double perRow = info[2].As<Napi::Number>().DoubleValue();
    const int64_t block = ggml_blck_size(static_cast<ggml_type>(type));
    if (!(perRow >= 1 && perRow <= static_cast<double>(int64_t(1) << 40)) ||
        perRow != static_cast<double>(static_cast<int64_t>(perRow)))
      throw ArgError("quantize: 'nPerRow' must be a positive integer");
    const int64_t nPerRow = static_cast<int64_t>(perRow);
    if (nPerRow % block != 0)
      throw ArgError("quantize: nPerRow = " + std::to_string(nPerRow) + " is not a multiple of " + typeLabel(type) +
                     "'s block size " + std::to_string(block));
    const int64_t n = static_cast<int64_t>(data.ElementLength());
    if (n % nPerRow != 0)
      throw ArgError("quantize: data holds " + std::to_string(n) + " values, not a whole number of rows of " +
                     std::to_string(nPerRow));
    const int64_t nRows = n / nPerRow;
    const size_t bytes = ggml_row_size(static_cast<ggml_type>(type), nPerRow) * static_cast<size_t>(nRows);
    Napi::Uint8Array out = Napi::Uint8Array::New(env, bytes);
    if (nRows > 0) {
      const size_t written = ggml_quantize_chunk(static_cast<ggml_type>(type), data.Data(), out.Data(), 0, nRows,
                                                 nPerRow, nullptr);
      if (written != bytes) {
        makeError(env, "NATIVE", "quantize: ggml wrote " + std::to_string(written) + " bytes, expected " +
                                     std::to_string(bytes))
            .ThrowAsJavaScriptException();
        return env.Undefined();
      }
    }
    return out;
  } catch (const ArgError& e) {
    settleQuietly([&] { makeError(env, "INVALID_ARGUMENT", e.what()).ThrowAsJavaScriptException(); });
    return env.Undefined();
  }
}

}  // namespace lmi::napi
