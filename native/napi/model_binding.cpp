// N-API exposure of the model engine (native/engine): loadModel -> NativeModel -> NativeContext.
// Arguments are checked on the JS thread; loading and evalMany run on libuv worker threads
// (SafeAsyncWorker), a context's eval on that context's own compute thread (eval_thread.h).
// Every failure of a Promise-returning call is a rejection whose `code` is one of lib/errors.ts'
// codes; synchronous calls throw the same way.
//
// Lifetimes: a NativeContext keeps its model's weights alive (the engine holds a shared_ptr), so
// model.dispose() releases the mapping only once its contexts are gone too. An eval holds its
// context alive, so context.dispose() during an eval frees the memory when the eval finishes.
// One eval at a time per context: a second eval() while one is running is rejected
// (INVALID_ARGUMENT), never queued. model.evalMany([{ context, batch }, ...]) runs the batches of
// several contexts of the model as one forward pass (engine MultiEval, created on first use);
// it marks every context busy while it runs, and is itself one call at a time per model.
#include "model_binding.h"

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "decode_request.h"
#include "eval_thread.h"
#include "js_args.h"
#include "mask_args.h"
#include "safe_async_worker.h"
#include "lmi/engine.h"
#include "lmi/sampling.h"

namespace lmi::napi {
namespace {

namespace eng = lmi::engine;

// An error with one of lib/errors.ts' codes, thrown inside the bindings.
class CodedError : public std::exception {
 public:
  CodedError(std::string code, std::string message) : code_(std::move(code)), message_(std::move(message)) {}
  const char* what() const noexcept override { return message_.c_str(); }
  const std::string& code() const { return code_; }

 private:
  std::string code_;
  std::string message_;
};

// Runs fn, turning every C++ failure into a coded JS error value (for rejections). Making that value
// can itself fail when the environment is terminating; then *error is left empty (see settleQuietly).
template <typename Fn>
bool captureError(Napi::Env env, Fn&& fn, Napi::Value* error) {
  try {
    fn();
    return true;
  } catch (const ArgError& e) {
    settleQuietly([&] { *error = makeError(env, "INVALID_ARGUMENT", e.what()).Value(); });
  } catch (const CodedError& e) {
    settleQuietly([&] { *error = makeError(env, e.code(), e.what()).Value(); });
  } catch (const eng::Error& e) {
    settleQuietly([&] { *error = makeError(env, eng::errorCodeName(e.code()), e.what()).Value(); });
  } catch (const Napi::Error& e) {
    settleQuietly([&] { *error = e.Value(); });
  } catch (const std::exception& e) {
    settleQuietly([&] { *error = makeError(env, "NATIVE", e.what()).Value(); });
  }
  return false;
}

// Same, thrown synchronously into JS.
template <typename Fn>
Napi::Value callOrThrow(Napi::Env env, Fn&& fn) {
  Napi::Value result = env.Undefined();
  Napi::Value error;
  if (!captureError(env, [&] { result = fn(); }, &error)) {
    settleQuietly([&] { Napi::Error(env, error).ThrowAsJavaScriptException(); });
    return env.Undefined();
  }
  return result;
}

Napi::Value rejected(Napi::Env env, const Napi::Value& error) {
  try {
    auto d = Napi::Promise::Deferred::New(env);
    d.Reject(error);
    return d.Promise();
  } catch (const Napi::Error&) {
    return env.Undefined();  // no JS can run: the environment is terminating
  }
}

template <typename T>
const T* typedData(const Napi::TypedArray& a) {
  return reinterpret_cast<const T*>(static_cast<const uint8_t*>(a.ArrayBuffer().Data()) + a.ByteOffset());
}

// ---------------------------------------------------------------------------------------------
// Argument parsing

constexpr int64_t kMaxSafe = (int64_t(1) << 53) - 1;

eng::ModelSpec parseSpec(const Napi::Object& o) {
  eng::ModelSpec spec;
  spec.path = requireString(o, "path");
  const std::string arch = requireString(o, "arch");
  if (!eng::parseArch(arch, &spec.arch))
    throw CodedError("UNSUPPORTED", "architecture '" + arch + "' is not supported (llama, qwen2, gptneox, mpt)");
  spec.threads = static_cast<int>(requireInteger(o, "threads", 1, 1024));
  if (!o.Get("device").IsUndefined()) {
    const std::string device = requireString(o, "device");
    if (device != "cpu" && device != "gpu") throw ArgError("'device' must be 'cpu' or 'gpu'");
    spec.device = device == "gpu" ? eng::Device::Gpu : eng::Device::Cpu;
  }

  Napi::Object h = requireObject(requireField(o, "hparams"), "hparams");
  eng::Hyperparameters& hp = spec.hparams;
  hp.nVocab = requireInteger(h, "nVocab", 1, kMaxSafe);
  hp.nEmbd = requireInteger(h, "nEmbd", 1, kMaxSafe);
  hp.nLayer = requireInteger(h, "nLayer", 1, kMaxSafe);
  hp.nHead = requireInteger(h, "nHead", 1, kMaxSafe);
  hp.nHeadKV = requireInteger(h, "nHeadKV", 1, kMaxSafe);
  hp.headDim = requireInteger(h, "headDim", 1, kMaxSafe);
  hp.nFF = requireInteger(h, "nFF", 1, kMaxSafe);
  hp.normEps = requireNumber(h, "normEps");
  hp.contextLength = requireInteger(h, "contextLength", 0, kMaxSafe);
  hp.ropeTheta = requireNumber(h, "ropeTheta");
  hp.ropeFreqScale = requireNumber(h, "ropeFreqScale");
  hp.rotaryDim = requireInteger(h, "rotaryDim", 0, kMaxSafe);
  const std::string pairing = requireString(h, "ropePairing");
  if (pairing != "normal" && pairing != "neox") throw ArgError("'ropePairing' must be 'normal' or 'neox'");
  hp.ropePairing = pairing == "normal" ? attn::RopePairing::Normal : attn::RopePairing::NeoX;
  hp.parallelResidual = requireBool(h, "parallelResidual");
  hp.alibiBiasMax = requireNumber(h, "alibiBiasMax");
  hp.clampKQV = requireNumber(h, "clampKQV");

  Napi::Value tv = requireField(o, "tensors");
  if (!tv.IsArray()) throw ArgError("'tensors' must be an array");
  Napi::Array tensors = tv.As<Napi::Array>();
  spec.tensors.reserve(tensors.Length());
  for (uint32_t i = 0; i < tensors.Length(); i++) {
    const std::string where = "tensors[" + std::to_string(i) + "]";
    Napi::Object t = requireObject(tensors.Get(i), where.c_str());
    eng::TensorSpec ts;
    ts.name = requireString(t, "name");
    ts.type = static_cast<int>(requireInteger(t, "type", 0, INT32_MAX));
    Napi::Value dv = requireField(t, "dims");
    if (!dv.IsArray()) throw ArgError(where + ".dims must be an array");
    Napi::Array dims = dv.As<Napi::Array>();
    if (dims.Length() > 8) throw ArgError(where + ".dims has " + std::to_string(dims.Length()) + " entries");
    for (uint32_t d = 0; d < dims.Length(); d++) {
      Napi::Value x = dims.Get(d);
      const double v = x.IsNumber() ? x.As<Napi::Number>().DoubleValue() : -1.0;
      if (!(v >= 0 && v <= static_cast<double>(kMaxSafe)) || v != static_cast<double>(static_cast<int64_t>(v)))
        throw ArgError(where + ".dims[" + std::to_string(d) + "] must be a non-negative integer");
      ts.dims.push_back(static_cast<int64_t>(v));
    }
    ts.offset = static_cast<uint64_t>(requireInteger(t, "offset", 0, kMaxSafe));
    ts.byteLength = static_cast<uint64_t>(requireInteger(t, "byteLength", 0, kMaxSafe));
    spec.tensors.push_back(std::move(ts));
  }
  return spec;
}

eng::ContextOptions parseContextOptions(const Napi::Object& o) {
  eng::ContextOptions c;
  c.nSlot = requireInteger(o, "nSlot", 1, int64_t(1) << 31);
  c.nArchive = requireInteger(o, "nArchive", 0, int64_t(1) << 31);
  c.topKFromLayer = requireInteger(o, "topKFromLayer", 0, int64_t(1) << 20);
  const std::string kv = requireString(o, "kvType");
  if (kv != "f16" && kv != "f32" && kv != "q8_0") throw ArgError("'kvType' must be 'f16', 'f32' or 'q8_0'");
  c.kvType = kv == "f16" ? attn::KVType::F16 : kv == "q8_0" ? attn::KVType::Q8_0 : attn::KVType::F32;
  c.maxBatch = requireInteger(o, "maxBatch", 1, int64_t(1) << 16);
  c.threads = static_cast<int>(requireInteger(o, "threads", 1, 1024));
  if (!o.Get("segmented").IsUndefined()) c.segmented = requireBool(o, "segmented");  // testing knob
  if (!o.Get("slotMajorKV").IsUndefined()) c.headMajorKV = !requireBool(o, "slotMajorKV");  // testing knob
  return c;
}

// Views into the batch's typed arrays; valid until the call returns (stage() copies them).
eng::Batch parseBatch(const Napi::Object& o) {
  eng::Batch b;
  Napi::TypedArray tokens = requireTypedArray(o, "tokens", napi_int32_array, "Int32Array");
  Napi::TypedArray positions = requireTypedArray(o, "positions", napi_bigint64_array, "BigInt64Array");
  Napi::TypedArray slots = requireTypedArray(o, "slots", napi_int32_array, "Int32Array");
  Napi::TypedArray copies = requireTypedArray(o, "archiveCopies", napi_int32_array, "Int32Array");
  Napi::TypedArray slotPositions = requireTypedArray(o, "slotPositions", napi_bigint64_array, "BigInt64Array");
  b.n = static_cast<int64_t>(tokens.ElementLength());
  if (positions.ElementLength() != tokens.ElementLength() || slots.ElementLength() != tokens.ElementLength())
    throw ArgError("tokens, positions and slots must have the same length (" + std::to_string(tokens.ElementLength()) +
                   ", " + std::to_string(positions.ElementLength()) + ", " + std::to_string(slots.ElementLength()) + ")");
  if (copies.ElementLength() % 2 != 0) throw ArgError("'archiveCopies' must hold (src, dst) pairs");
  b.tokens = typedData<int32_t>(tokens);
  b.positions = typedData<int64_t>(positions);
  b.slots = typedData<int32_t>(slots);
  b.archiveCopies = typedData<int32_t>(copies);
  b.nArchiveCopies = static_cast<int64_t>(copies.ElementLength() / 2);
  b.slotPositions = typedData<int64_t>(slotPositions);
  b.nSlotPositions = static_cast<int64_t>(slotPositions.ElementLength());

  b.mask = parseLambdaMask(requireObject(requireField(o, "mask"), "mask"));
  Napi::Object topK = requireObject(requireField(o, "topK"), "topK");
  b.topK.k = static_cast<int>(requireInteger(topK, "k", 0, 1 << 20));
  b.topK.insertAt = requireInteger(topK, "insertAt", 0, kMaxJsPosition);
  const std::string logits = requireString(o, "logits");
  if (logits == "all") b.logits = eng::LogitsMode::All;
  else if (logits == "last") b.logits = eng::LogitsMode::Last;
  else if (logits == "none") b.logits = eng::LogitsMode::None;
  else throw ArgError("'logits' must be 'all', 'last' or 'none'");
  return b;
}

// ---------------------------------------------------------------------------------------------
// Classes

struct EngineClasses {
  Napi::FunctionReference model;
  Napi::FunctionReference context;
};

std::mutex gClassesMutex;
std::unordered_map<napi_env, EngineClasses*> gClasses;
int kConstructTag = 0;  // its address marks constructor calls made by the bindings

EngineClasses& classesFor(Napi::Env env);

// What a job off the JS thread (a context's compute thread, a libuv worker) reports back to it.
struct JobOutcome {
  bool ok = false;
  std::string code, error;  // lib/errors.ts code and message when !ok

  // Runs fn on the compute thread; an exception becomes (code, error).
  template <typename Fn>
  void run(Fn&& fn) {
    try {
      fn();
      ok = true;
    } catch (const eng::Error& e) {
      code = eng::errorCodeName(e.code());
      error = e.what();
    } catch (const std::exception& e) {
      code = "NATIVE";
      error = e.what();
    }
  }
};

struct ContextSlot {
  std::shared_ptr<eng::Context> context;  // null once disposed
  bool inFlight = false;
  // Finished evals and the seconds their engine run() took (stats(): what the layers above cost is
  // the wall time around an eval minus this).
  double evals = 0;
  double calls = 0;
  double computeSeconds = 0;
  std::shared_ptr<EvalThread> thread;  // started by the first eval, stopped by dispose
};

class ContextWrap : public Napi::ObjectWrap<ContextWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeContext",
                       {InstanceMethod<&ContextWrap::Eval>("eval"), InstanceMethod<&ContextWrap::Decode>("decode"),
                        InstanceMethod<&ContextWrap::Rollback>("rollback"),
                        InstanceMethod<&ContextWrap::KvBytes>("kvBytes"),
                        InstanceMethod<&ContextWrap::Stats>("stats"), InstanceMethod<&ContextWrap::Dispose>("dispose")});
  }

  std::shared_ptr<ContextSlot> slot() const { return slot_; }

  explicit ContextWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ContextWrap>(info) {
    if (info.Length() != 2 || !info[0].IsExternal() || info[0].As<Napi::External<int>>().Data() != &kConstructTag ||
        !info[1].IsExternal())
      throw makeError(info.Env(), "INVALID_ARGUMENT", "NativeContext objects come from NativeModel.createContext()");
    slot_ = std::make_shared<ContextSlot>();
    slot_->context = *info[1].As<Napi::External<std::shared_ptr<eng::Context>>>().Data();
  }

 private:
  Napi::Value Eval(const Napi::CallbackInfo& info);
  Napi::Value Decode(const Napi::CallbackInfo& info);

  // Throws unless the context can take `call` now: not disposed, no eval in flight.
  void requireIdle(const char* call) const {
    if (!slot_->context) throw CodedError("DISPOSED", "NativeContext has been disposed and cannot be used any more");
    if (slot_->inFlight)
      throw CodedError("INVALID_ARGUMENT", std::string(call) +
                                               "() called while another eval() on this context is still running; "
                                               "await it first (one eval at a time per context)");
  }

  // The context's compute thread, started by its first eval.
  EvalThread& thread(Napi::Env env) {
    if (!slot_->thread) {
      try {
        slot_->thread = EvalThread::start(env);
      } catch (const std::exception& e) {
        throw CodedError("NATIVE", e.what());
      }
    }
    return *slot_->thread;
  }

  Napi::Value Rollback(const Napi::CallbackInfo& info) {
    return callOrThrow(info.Env(), [&]() -> Napi::Value {
      requireIdle("rollback");
      if (info.Length() < 1 || !info[0].IsNumber()) throw ArgError("rollback(steps) expects a number");
      const double steps = info[0].As<Napi::Number>().DoubleValue();
      if (!(steps >= 0 && steps <= 1e9) || steps != static_cast<double>(static_cast<int64_t>(steps)))
        throw ArgError("rollback(steps): steps must be an integer >= 0");
      slot_->context->rollback(static_cast<int64_t>(steps));  // a few rows per layer: fine on the JS thread
      return info.Env().Undefined();
    });
  }

  Napi::Value KvBytes(const Napi::CallbackInfo& info) {
    return callOrThrow(info.Env(), [&]() -> Napi::Value {
      if (!slot_->context) throw CodedError("DISPOSED", "NativeContext has been disposed and cannot be used any more");
      return Napi::Number::New(info.Env(), static_cast<double>(slot_->context->kvBytes()));
    });
  }

  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("evals", slot_->evals);
    o.Set("calls", slot_->calls);
    o.Set("computeSeconds", slot_->computeSeconds);
    return o;
  }

  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    // A running eval holds its own reference; the memory goes when it finishes.
    slot_->context.reset();
    if (slot_->thread) slot_->thread->stop();  // it finishes the eval in hand, then exits
    return info.Env().Undefined();
  }

  std::shared_ptr<ContextSlot> slot_;
};

Napi::Value ContextWrap::Eval(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Value result;
  Napi::Value error;
  const bool ok = captureError(env, [&] {
    requireIdle("eval");
    if (info.Length() < 1) throw ArgError("eval(batch) expects one argument");
    Napi::Object batch = requireObject(info[0], "batch");
    eng::Batch b = parseBatch(batch);
    slot_->context->stage(b);  // validates and copies
    const int64_t rows = slot_->context->stagedOutputRows();
    const int64_t nVocab = slot_->context->nVocab();
    const size_t length = static_cast<size_t>(rows * nVocab);
    // batch.out: a caller's Float32Array of exactly the logits' length to write into (no allocation
    // per decoded token); otherwise a fresh one.
    Napi::Value given = batch.Get("out");
    Napi::Float32Array out;
    if (given.IsUndefined()) {
      out = Napi::Float32Array::New(env, length);
    } else {
      if (!given.IsTypedArray() || given.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
        throw ArgError("'out' must be a Float32Array");
      out = given.As<Napi::Float32Array>();
      if (out.ElementLength() != length)
        throw ArgError("'out' has " + std::to_string(out.ElementLength()) + " elements; this batch returns " +
                       std::to_string(rows) + " × " + std::to_string(nVocab) + " = " + std::to_string(length) +
                       " logits");
    }
    EvalThread& worker = thread(env);
    struct Outcome : JobOutcome {
      double seconds = 0;
    };
    auto outcome = std::make_shared<Outcome>();
    auto outRef = std::make_shared<Napi::Reference<Napi::Float32Array>>(Napi::Persistent(out));
    Napi::Promise::Deferred deferred = Napi::Promise::Deferred::New(env);
    std::shared_ptr<eng::Context> context = slot_->context;  // alive through dispose() until the eval ends
    float* data = out.ElementLength() > 0 ? out.Data() : nullptr;
    std::shared_ptr<ContextSlot> slot = slot_;
    slot_->inFlight = true;
    worker.submit(
        env,
        [context, data, outcome] {
          outcome->run([&] {
            const auto t0 = std::chrono::steady_clock::now();
            context->run(data);
            outcome->seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
          });
        },
        [slot, deferred, outRef, outcome](Napi::Env e) {
          slot->inFlight = false;
          if (outcome->ok) {
            slot->evals += 1;
            slot->calls += 1;
            slot->computeSeconds += outcome->seconds;
            deferred.Resolve(outRef->Value());
          } else {
            deferred.Reject(makeError(e, outcome->code, outcome->error).Value());
          }
        });
    result = deferred.Promise();
  }, &error);
  return ok ? result : rejected(env, error);
}

Napi::Value ContextWrap::Decode(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Value result;
  Napi::Value error;
  const bool ok = captureError(env, [&] {
    requireIdle("decode");
    if (info.Length() < 1) throw ArgError("decode(request) expects one argument");
    Napi::Object o = requireObject(info[0], "request");
    const int64_t nVocab = slot_->context->nVocab();
    auto request = std::make_shared<DecodeRequest>();
    parseDecodeRequest(o, nVocab, request.get());
    slot_->context->checkDecode(request->run);
    Napi::TypedArray out = requireTypedArray(o, "out", napi_float32_array, "Float32Array");
    if (static_cast<int64_t>(out.ElementLength()) != nVocab)
      throw ArgError("'out' must have nVocab = " + std::to_string(nVocab) + " elements");
    Napi::TypedArray sampledOut = requireTypedArray(o, "sampledOut", napi_int32_array, "Int32Array");
    if (static_cast<int64_t>(sampledOut.ElementLength()) < request->run.maxSteps)
      throw ArgError("'sampledOut' must hold at least as many ids as the run has steps");
    EvalThread& worker = thread(env);
    struct Outcome : JobOutcome {
      eng::DecodeOutcome decoded;
    };
    auto outcome = std::make_shared<Outcome>();
    auto outRef = std::make_shared<Napi::Reference<Napi::TypedArray>>(Napi::Persistent(out));
    auto sampledRef = std::make_shared<Napi::Reference<Napi::TypedArray>>(Napi::Persistent(sampledOut));
    float* logits = const_cast<float*>(typedData<float>(out));
    int32_t* sampled = const_cast<int32_t*>(typedData<int32_t>(sampledOut));
    Napi::Promise::Deferred deferred = Napi::Promise::Deferred::New(env);
    std::shared_ptr<eng::Context> context = slot_->context;
    std::shared_ptr<ContextSlot> slot = slot_;
    slot_->inFlight = true;
    worker.submit(
        env,
        [context, request, logits, sampled, outcome] {
          outcome->run([&] {
            eng::TokenSampler sampler(request->sampling, context->nVocab());
            outcome->decoded = context->decode(request->run, sampler, request->rng, sampled, logits);
          });
        },
        [slot, deferred, outRef, sampledRef, request, outcome](Napi::Env e) {
          slot->inFlight = false;
          if (!outcome->ok) {
            deferred.Reject(makeError(e, outcome->code, outcome->error).Value());
            return;
          }
          slot->evals += static_cast<double>(outcome->decoded.steps);
          slot->calls += 1;
          slot->computeSeconds += outcome->decoded.computeSeconds;
          Napi::Object r = Napi::Object::New(e);
          r.Set("steps", static_cast<double>(outcome->decoded.steps));
          r.Set("sampled", static_cast<double>(outcome->decoded.sampled));
          r.Set("computeSeconds", outcome->decoded.computeSeconds);
          Napi::Uint32Array rng = Napi::Uint32Array::New(e, 4);
          rng[0] = request->rng.a;
          rng[1] = request->rng.b;
          rng[2] = request->rng.c;
          rng[3] = request->rng.d;
          r.Set("rngState", rng);
          deferred.Resolve(r);
        });
    result = deferred.Promise();
  }, &error);
  return ok ? result : rejected(env, error);
}

// The model's batched evaluator, created on the first evalMany().
struct MultiSlot {
  std::shared_ptr<eng::MultiEval> eval;
  bool inFlight = false;
};

class EvalManyWorker : public SafeAsyncWorker {
 public:
  EvalManyWorker(Napi::Env env, std::shared_ptr<MultiSlot> multi, std::vector<std::shared_ptr<ContextSlot>> slots,
                 std::vector<Napi::Float32Array>& outs)
      : SafeAsyncWorker(env, "lmi.evalMany"),
        deferred_(Napi::Promise::Deferred::New(env)),
        multi_(std::move(multi)),
        eval_(multi_->eval),
        slots_(std::move(slots)) {
    for (auto& slot : slots_) contexts_.push_back(slot->context);  // alive through dispose()
    for (auto& out : outs) {
      outs_.push_back(Napi::Persistent(out));
      outData_.push_back(out.ElementLength() > 0 ? out.Data() : nullptr);
    }
  }

  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    JobOutcome o;
    o.run([&] {
      std::vector<eng::Context*> raw;
      for (auto& c : contexts_) raw.push_back(c.get());
      eval_->run(raw, outData_);
    });
    if (!o.ok) {
      code_ = o.code;
      SetError(o.error);
    }
  }

  void OnOK() override {
    release();
    settleQuietly([&] {
      Napi::Env env = Env();
      Napi::Array result = Napi::Array::New(env, outs_.size());
      for (size_t i = 0; i < outs_.size(); i++) result.Set(static_cast<uint32_t>(i), outs_[i].Value());
      deferred_.Resolve(result);
    });
  }

  void OnError(const Napi::Error& e) override {
    release();
    settleQuietly([&] { deferred_.Reject(makeError(Env(), code_, e.Message()).Value()); });
  }

 private:
  void release() {
    multi_->inFlight = false;
    for (auto& slot : slots_) slot->inFlight = false;
  }

  Napi::Promise::Deferred deferred_;
  std::shared_ptr<MultiSlot> multi_;
  std::shared_ptr<eng::MultiEval> eval_;
  std::vector<std::shared_ptr<ContextSlot>> slots_;
  std::vector<std::shared_ptr<eng::Context>> contexts_;
  std::vector<Napi::Reference<Napi::Float32Array>> outs_;
  std::vector<float*> outData_;
  std::string code_ = "NATIVE";
};

class ModelWrap : public Napi::ObjectWrap<ModelWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeModel",
                       {InstanceMethod<&ModelWrap::CreateContext>("createContext"),
                        InstanceMethod<&ModelWrap::EvalMany>("evalMany"),
                        InstanceMethod<&ModelWrap::WeightBytes>("weightBytes"),
                        InstanceMethod<&ModelWrap::Device>("device"),
                        InstanceMethod<&ModelWrap::WeightLayouts>("weightLayouts"),
                        InstanceMethod<&ModelWrap::Dispose>("dispose")});
  }

  explicit ModelWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ModelWrap>(info) {
    if (info.Length() != 2 || !info[0].IsExternal() || info[0].As<Napi::External<int>>().Data() != &kConstructTag ||
        !info[1].IsExternal())
      throw makeError(info.Env(), "INVALID_ARGUMENT", "NativeModel objects come from loadModel()");
    model_ = *info[1].As<Napi::External<std::shared_ptr<const eng::Model>>>().Data();
  }

 private:
  Napi::Value CreateContext(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return callOrThrow(env, [&]() -> Napi::Value {
      if (!model_) throw CodedError("DISPOSED", "NativeModel has been disposed and cannot be used any more");
      if (info.Length() < 1) throw ArgError("createContext(options) expects one argument");
      eng::ContextOptions opts = parseContextOptions(requireObject(info[0], "options"));
      auto context = std::make_shared<eng::Context>(model_, opts);
      Napi::External<int> tag = Napi::External<int>::New(env, &kConstructTag);
      Napi::External<std::shared_ptr<eng::Context>> ptr =
          Napi::External<std::shared_ptr<eng::Context>>::New(env, &context);
      return classesFor(env).context.New({tag, ptr});
    });
  }

  Napi::Value EvalMany(const Napi::CallbackInfo& info);

  Napi::Value WeightBytes(const Napi::CallbackInfo& info) {
    return callOrThrow(info.Env(), [&]() -> Napi::Value {
      if (!model_) throw CodedError("DISPOSED", "NativeModel has been disposed and cannot be used any more");
      return Napi::Number::New(info.Env(), static_cast<double>(eng::modelWeightBytes(*model_)));
    });
  }

  Napi::Value Device(const Napi::CallbackInfo& info) {
    return callOrThrow(info.Env(), [&]() -> Napi::Value {
      if (!model_) throw CodedError("DISPOSED", "NativeModel has been disposed and cannot be used any more");
      return Napi::String::New(info.Env(), eng::deviceName(eng::modelDevice(*model_)));
    });
  }

  Napi::Value WeightLayouts(const Napi::CallbackInfo& info) {
    return callOrThrow(info.Env(), [&]() -> Napi::Value {
      if (!model_) throw CodedError("DISPOSED", "NativeModel has been disposed and cannot be used any more");
      const std::vector<eng::WeightLayout> layouts = eng::modelWeightLayouts(*model_);
      Napi::Array out = Napi::Array::New(info.Env(), layouts.size());
      for (size_t i = 0; i < layouts.size(); i++) {
        Napi::Object o = Napi::Object::New(info.Env());
        o.Set("name", layouts[i].name);
        o.Set("tensors", static_cast<double>(layouts[i].tensors));
        o.Set("bytes", static_cast<double>(layouts[i].bytes));
        out.Set(static_cast<uint32_t>(i), o);
      }
      return out;
    });
  }

  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    model_.reset();  // contexts still alive keep the weights mapped until they go
    multi_.reset();  // a running evalMany holds its own reference
    return info.Env().Undefined();
  }

  std::shared_ptr<const eng::Model> model_;
  std::shared_ptr<MultiSlot> multi_;
};

Napi::Value ModelWrap::EvalMany(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Value result;
  Napi::Value error;
  const bool ok = captureError(env, [&] {
    if (!model_) throw CodedError("DISPOSED", "NativeModel has been disposed and cannot be used any more");
    if (!multi_) {
      multi_ = std::make_shared<MultiSlot>();
      multi_->eval = std::make_shared<eng::MultiEval>(model_, 0);
    }
    if (multi_->inFlight)
      throw CodedError("INVALID_ARGUMENT",
                       "evalMany() called while another evalMany() on this model is still running; await it first "
                       "(one batched eval at a time per model)");
    if (info.Length() < 1 || !info[0].IsArray()) throw ArgError("evalMany(items) expects an array of { context, batch }");
    Napi::Array items = info[0].As<Napi::Array>();
    if (items.Length() < 1 || items.Length() > 65536)
      throw ArgError("evalMany(items) needs 1 to 65536 items, got " + std::to_string(items.Length()));
    Napi::Function contextClass = classesFor(env).context.Value();
    std::vector<std::shared_ptr<ContextSlot>> slots;
    std::unordered_set<const ContextSlot*> seen;
    for (uint32_t i = 0; i < items.Length(); i++) {
      const std::string where = "items[" + std::to_string(i) + "]";
      Napi::Object item = requireObject(items.Get(i), where.c_str());
      Napi::Value cv = item.Get("context");
      if (!cv.IsObject() || !cv.As<Napi::Object>().InstanceOf(contextClass))
        throw ArgError(where + ".context must be a NativeContext");
      std::shared_ptr<ContextSlot> slot = ContextWrap::Unwrap(cv.As<Napi::Object>())->slot();
      if (!slot->context) throw CodedError("DISPOSED", where + ".context has been disposed and cannot be used any more");
      if (slot->inFlight)
        throw CodedError("INVALID_ARGUMENT", where + ".context is running another eval; await it first (one eval at a time per context)");
      if (!seen.insert(slot.get()).second) throw ArgError(where + ".context appears twice in one evalMany()");
      if (!multi_->eval->accepts(*slot->context)) throw ArgError(where + ".context belongs to another model");
      slots.push_back(std::move(slot));
    }
    // Stage (validate and copy) every batch before anything runs; a bad batch rejects the call.
    std::vector<Napi::Float32Array> outs;
    for (uint32_t i = 0; i < items.Length(); i++) {
      Napi::Object item = items.Get(i).As<Napi::Object>();
      eng::Batch b = parseBatch(requireObject(item.Get("batch"), ("items[" + std::to_string(i) + "].batch").c_str()));
      try {
        slots[i]->context->stage(b);
      } catch (const eng::Error& e) {
        throw eng::Error(e.code(), "items[" + std::to_string(i) + "].batch: " + e.what());
      }
      const int64_t rows = slots[i]->context->stagedOutputRows();
      outs.push_back(Napi::Float32Array::New(env, static_cast<size_t>(rows * slots[i]->context->nVocab())));
    }
    auto* worker = new EvalManyWorker(env, multi_, slots, outs);
    result = worker->Promise();
    multi_->inFlight = true;
    for (auto& slot : slots) slot->inFlight = true;
    worker->Queue();
  }, &error);
  return ok ? result : rejected(env, error);
}

class LoadWorker : public SafeAsyncWorker {
 public:
  LoadWorker(Napi::Env env, eng::ModelSpec spec)
      : SafeAsyncWorker(env, "lmi.loadModel"), deferred_(Napi::Promise::Deferred::New(env)), spec_(std::move(spec)) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    JobOutcome o;
    o.run([&] { model_ = eng::loadModel(spec_); });
    if (!o.ok) {
      code_ = o.code;
      SetError(o.error);
    }
  }

  void OnOK() override {
    settleQuietly([&] {
      Napi::Env env = Env();
      Napi::Value error;
      Napi::Value obj;
      if (captureError(env, [&] {
            Napi::External<int> tag = Napi::External<int>::New(env, &kConstructTag);
            auto ptr = Napi::External<std::shared_ptr<const eng::Model>>::New(env, &model_);
            obj = classesFor(env).model.New({tag, ptr});
          }, &error)) {
        deferred_.Resolve(obj);
      } else {
        deferred_.Reject(error);
      }
    });
  }

  void OnError(const Napi::Error& e) override {
    settleQuietly([&] { deferred_.Reject(makeError(Env(), code_, e.Message()).Value()); });
  }

 private:
  Napi::Promise::Deferred deferred_;
  eng::ModelSpec spec_;
  std::shared_ptr<const eng::Model> model_;
  std::string code_ = "NATIVE";
};

EngineClasses& classesFor(Napi::Env env) {
  {
    std::lock_guard<std::mutex> lock(gClassesMutex);
    auto it = gClasses.find(env);
    if (it != gClasses.end()) return *it->second;
  }
  auto* classes = new EngineClasses();
  classes->model = Napi::Persistent(ModelWrap::Define(env));
  classes->context = Napi::Persistent(ContextWrap::Define(env));
  {
    std::lock_guard<std::mutex> lock(gClassesMutex);
    gClasses[env] = classes;
  }
  napi_env key = env;
  env.AddCleanupHook([key]() {
    std::lock_guard<std::mutex> lock(gClassesMutex);
    auto it = gClasses.find(key);
    if (it != gClasses.end()) {
      delete it->second;
      gClasses.erase(it);
    }
  });
  return *classes;
}

}  // namespace

Napi::Value LoadModel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Value result;
  Napi::Value error;
  const bool ok = captureError(env, [&] {
    if (info.Length() < 1) throw ArgError("loadModel(spec) expects one argument");
    eng::ModelSpec spec = parseSpec(requireObject(info[0], "spec"));
    classesFor(env);  // define the classes on the JS thread, before the worker needs them
    auto* worker = new LoadWorker(env, std::move(spec));
    result = worker->Promise();
    worker->Queue();
  }, &error);
  return ok ? result : rejected(env, error);
}

}  // namespace lmi::napi
