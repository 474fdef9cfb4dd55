// Reading JS arguments in the bindings: every mismatch becomes a JS exception whose
// `code` is INVALID_ARGUMENT, which lib/native turns into an InvalidArgumentError.
#pragma once
#include <napi.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace lmi::napi {

class ArgError : public std::exception {
 public:
  explicit ArgError(std::string message) : message_(std::move(message)) {}
  const char* what() const noexcept override { return message_.c_str(); }

 private:
  std::string message_;
};

inline Napi::Error makeError(Napi::Env env, const std::string& code, const std::string& message) {
  Napi::Error err = Napi::Error::New(env, message);
  err.Set("code", Napi::String::New(env, code));
  return err;
}

inline Napi::Object requireObject(const Napi::Value& v, const char* name) {
  if (!v.IsObject()) throw ArgError(std::string(name) + " must be an object");
  return v.As<Napi::Object>();
}

inline Napi::Value requireField(const Napi::Object& o, const char* name) {
  Napi::Value v = o.Get(name);
  if (v.IsUndefined()) throw ArgError(std::string("missing required field '") + name + "'");
  return v;
}

inline double requireNumber(const Napi::Object& o, const char* name) {
  Napi::Value v = requireField(o, name);
  if (!v.IsNumber()) throw ArgError(std::string("'") + name + "' must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d)) throw ArgError(std::string("'") + name + "' must be finite");
  return d;
}

inline int64_t requireInteger(const Napi::Object& o, const char* name, int64_t min, int64_t max) {
  double d = requireNumber(o, name);
  if (d != std::floor(d) || d < static_cast<double>(min) || d > static_cast<double>(max))
    throw ArgError(std::string("'") + name + "' must be an integer in [" + std::to_string(min) + ", " +
                   std::to_string(max) + "]");
  return static_cast<int64_t>(d);
}

inline bool requireBool(const Napi::Object& o, const char* name) {
  Napi::Value v = requireField(o, name);
  if (!v.IsBoolean()) throw ArgError(std::string("'") + name + "' must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

inline std::string requireString(const Napi::Object& o, const char* name) {
  Napi::Value v = requireField(o, name);
  if (!v.IsString()) throw ArgError(std::string("'") + name + "' must be a string");
  return v.As<Napi::String>().Utf8Value();
}

inline double requireNumberIn(const Napi::Object& o, const char* name, double min, double max) {
  const double v = requireNumber(o, name);
  if (!(v >= min && v <= max))
    throw ArgError(std::string("'") + name + "' must be in [" + std::to_string(min) + ", " + std::to_string(max) + "]");
  return v;
}

// A typed array's elements, copied (for work that outlives the call).
template <typename T>
std::vector<T> copyTyped(const Napi::TypedArray& a) {
  const T* data = reinterpret_cast<const T*>(static_cast<const uint8_t*>(a.ArrayBuffer().Data()) + a.ByteOffset());
  return std::vector<T>(data, data + a.ElementLength());
}

// A typed array of exactly the given element type.
inline Napi::TypedArray requireTypedArray(const Napi::Object& o, const char* name, napi_typedarray_type type,
                                          const char* typeName) {
  Napi::Value v = requireField(o, name);
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != type)
    throw ArgError(std::string("'") + name + "' must be a " + typeName);
  return v.As<Napi::TypedArray>();
}

// Runs a step that hands a result or an error to JS: settling a promise in a completion callback
// (AsyncWorker OnOK/OnError, a thread-safe function), or throwing an error into JS from a catch
// handler. When the environment is terminating (a worker thread's terminate()), every JS call fails
// and node-addon-api throws; nothing can be reported then, so that failure is dropped rather than
// escaping the callback and aborting the process.
template <typename Fn>
void settleQuietly(Fn&& fn) {
  try {
    fn();
  } catch (...) {
  }
}

}  // namespace lmi::napi
