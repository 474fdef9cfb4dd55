// N-API exposure of the Λ-attention kernel: validates on the JS thread, computes on a
// libuv worker thread (Napi::AsyncWorker), resolves with the output Float32Array.
#include "attention_binding.h"

#include <string>

#include "js_args.h"
#include "mask_args.h"
#include "safe_async_worker.h"
#include "lmi/attention.h"

namespace lmi::napi {
namespace {

using attn::Encoding;
using attn::KVType;
using attn::RopePairing;

class AttentionWorker : public SafeAsyncWorker {
 public:
  AttentionWorker(Napi::Env env, Napi::Object args, const attn::Problem& problem, attn::RunOptions opts,
                  Napi::Float32Array out)
      : SafeAsyncWorker(env, "lmi.attention"),
        deferred_(Napi::Promise::Deferred::New(env)),
        args_(Napi::Persistent(args)),
        out_(Napi::Persistent(out)),
        problem_(problem),
        opts_(opts) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    try {
      attn::run(problem_, opts_);
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }

  void OnOK() override {
    settleQuietly([&] { deferred_.Resolve(out_.Value()); });
  }

  void OnError(const Napi::Error& e) override {
    settleQuietly([&] { deferred_.Reject(makeError(Env(), "NATIVE", e.Message()).Value()); });
  }

 private:
  Napi::Promise::Deferred deferred_;
  Napi::ObjectReference args_;       // keeps the input typed arrays alive while the worker reads them
  Napi::Reference<Napi::Float32Array> out_;
  attn::Problem problem_;
  attn::RunOptions opts_;
};

template <typename T>
const T* dataOf(const Napi::TypedArray& a) {
  return reinterpret_cast<const T*>(static_cast<const uint8_t*>(a.ArrayBuffer().Data()) + a.ByteOffset());
}

void requireLength(const Napi::TypedArray& a, const char* name, int64_t expected) {
  if (static_cast<int64_t>(a.ElementLength()) != expected)
    throw ArgError(std::string("'") + name + "' has " + std::to_string(a.ElementLength()) +
                   " elements, expected " + std::to_string(expected));
}

}  // namespace

Napi::Value Attention(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  try {
    if (info.Length() < 1) throw ArgError("attention(args) expects one argument");
    Napi::Object args = requireObject(info[0], "args");
    attn::Problem p;
    constexpr int64_t kMaxDim = 1 << 20;
    p.nQ = static_cast<int>(requireInteger(args, "nQ", 1, kMaxDim));
    p.nHead = static_cast<int>(requireInteger(args, "nHead", 1, 4096));
    p.nHeadKV = static_cast<int>(requireInteger(args, "nHeadKV", 1, 4096));
    p.headDim = static_cast<int>(requireInteger(args, "headDim", 1, 4096));
    p.nSlot = requireInteger(args, "nSlot", 0, int64_t(1) << 40);

    const std::string kvType = requireString(args, "kvType");
    if (kvType != "f32" && kvType != "f16") throw ArgError("'kvType' must be 'f32' or 'f16'");
    p.kvType = kvType == "f32" ? KVType::F32 : KVType::F16;
    const napi_typedarray_type kvArrayType = p.kvType == KVType::F32 ? napi_float32_array : napi_uint16_array;
    const char* kvArrayName = p.kvType == KVType::F32 ? "Float32Array (kvType 'f32')" : "Uint16Array (kvType 'f16')";

    Napi::TypedArray q = requireTypedArray(args, "q", napi_float32_array, "Float32Array");
    Napi::TypedArray k = requireTypedArray(args, "k", kvArrayType, kvArrayName);
    Napi::TypedArray v = requireTypedArray(args, "v", kvArrayType, kvArrayName);
    Napi::TypedArray slotPos = requireTypedArray(args, "slotPos", napi_bigint64_array, "BigInt64Array");
    Napi::TypedArray qPos = requireTypedArray(args, "qPos", napi_bigint64_array, "BigInt64Array");

    const int64_t qElems = int64_t(p.nQ) * p.nHead * p.headDim;
    const int64_t kvElems = p.nSlot * p.nHeadKV * p.headDim;
    requireLength(q, "q", qElems);
    requireLength(k, "k", kvElems);
    requireLength(v, "v", kvElems);
    requireLength(slotPos, "slotPos", p.nSlot);
    requireLength(qPos, "qPos", p.nQ);
    p.q = dataOf<float>(q);
    p.k = p.kvType == KVType::F32 ? static_cast<const void*>(dataOf<float>(k)) : dataOf<uint16_t>(k);
    p.v = p.kvType == KVType::F32 ? static_cast<const void*>(dataOf<float>(v)) : dataOf<uint16_t>(v);
    p.slotPos = dataOf<int64_t>(slotPos);
    p.qPos = dataOf<int64_t>(qPos);
    p.scale = static_cast<float>(requireNumber(args, "scale"));

    Napi::Object enc = requireObject(requireField(args, "encoding"), "encoding");
    const std::string kind = requireString(enc, "kind");
    if (kind == "rope") {
      p.pe.kind = Encoding::Rope;
      p.pe.thetaBase = requireNumber(enc, "thetaBase");
      p.pe.freqScale = requireNumber(enc, "freqScale");
      p.pe.rotaryDim = static_cast<int>(requireInteger(enc, "rotaryDim", 0, 4096));
      const std::string pairing = requireString(enc, "pairing");
      if (pairing != "normal" && pairing != "neox") throw ArgError("'pairing' must be 'normal' or 'neox'");
      p.pe.pairing = pairing == "normal" ? RopePairing::Normal : RopePairing::NeoX;
    } else if (kind == "alibi") {
      p.pe.kind = Encoding::Alibi;
      Napi::TypedArray slopes = requireTypedArray(enc, "slopes", napi_float32_array, "Float32Array");
      requireLength(slopes, "slopes", p.nHead);
      p.pe.alibiSlopes = dataOf<float>(slopes);
    } else if (kind == "none") {
      p.pe.kind = Encoding::None;
    } else {
      throw ArgError("'encoding.kind' must be 'rope', 'alibi' or 'none'");
    }

    p.mask = parseLambdaMask(requireObject(requireField(args, "mask"), "mask"));
    Napi::Object topK = requireObject(requireField(args, "topK"), "topK");
    p.topK.k = static_cast<int>(requireInteger(topK, "k", 0, 1 << 20));
    p.topK.insertAt = requireInteger(topK, "insertAt", 0, kMaxJsPosition);

    attn::RunOptions opts;
    opts.threads = static_cast<int>(requireInteger(args, "threads", 1, 1024));
    Napi::Value portable = args.Get("forcePortable");
    opts.forcePortable = portable.IsBoolean() && portable.As<Napi::Boolean>().Value();
    Napi::Value noAvx512 = args.Get("noAvx512");
    opts.noAvx512 = noAvx512.IsBoolean() && noAvx512.As<Napi::Boolean>().Value();

    Napi::Float32Array out = Napi::Float32Array::New(env, static_cast<size_t>(qElems));
    p.out = out.Data();
    attn::validate(p);
    auto* worker = new AttentionWorker(env, args, p, opts, out);
    Napi::Promise promise = worker->Promise();
    worker->Queue();
    return promise;
  } catch (const ArgError& e) {
    settleQuietly([&] { makeError(env, "INVALID_ARGUMENT", e.what()).ThrowAsJavaScriptException(); });
  } catch (const attn::InvalidArgument& e) {
    settleQuietly([&] { makeError(env, "INVALID_ARGUMENT", e.what()).ThrowAsJavaScriptException(); });
  } catch (const Napi::Error& e) {
    settleQuietly([&] { e.ThrowAsJavaScriptException(); });
  } catch (const std::exception& e) {
    settleQuietly([&] { makeError(env, "NATIVE", e.what()).ThrowAsJavaScriptException(); });
  }
  return env.Undefined();
}

Napi::Value Classify(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  try {
    if (info.Length() < 3) throw ArgError("classify(i, j, mask) expects three arguments");
    Napi::Object holder = Napi::Object::New(env);
    holder.Set("i", info[0]);
    holder.Set("j", info[1]);
    Napi::TypedArray i = requireTypedArray(holder, "i", napi_bigint64_array, "BigInt64Array");
    Napi::TypedArray j = requireTypedArray(holder, "j", napi_bigint64_array, "BigInt64Array");
    requireLength(j, "j", static_cast<int64_t>(i.ElementLength()));
    const attn::LambdaMask m = parseLambdaMask(requireObject(info[2], "mask"));
    const int64_t* iv = dataOf<int64_t>(i);
    const int64_t* jv = dataOf<int64_t>(j);
    Napi::Int8Array out = Napi::Int8Array::New(env, i.ElementLength());
    for (size_t n = 0; n < i.ElementLength(); n++) out[n] = static_cast<int8_t>(attn::classify(iv[n], jv[n], m));
    return out;
  } catch (const ArgError& e) {
    settleQuietly([&] { makeError(env, "INVALID_ARGUMENT", e.what()).ThrowAsJavaScriptException(); });
  }
  return env.Undefined();
}

Napi::Value CpuHasAvx2Fma(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), attn::cpuHasAvx2Fma());
}

}  // namespace lmi::napi
