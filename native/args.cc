#include "args.h"

#include <cmath>

namespace pfn {
namespace {

template <class T>
View<T> typed(Napi::Env env, const Napi::Value& v, const std::string& arg, napi_typedarray_type type,
              const char* name) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != type)
    throw_type(env, arg, name, v);
  Napi::TypedArray arr = v.As<Napi::TypedArray>();
  View<T> view;
  view.length = arr.ElementLength();
  view.data = view.length == 0
                  ? nullptr
                  : reinterpret_cast<T*>(static_cast<uint8_t*>(arr.ArrayBuffer().Data()) + arr.ByteOffset());
  view.value = v;
  return view;
}

}  // namespace

View<float> f32_array(Napi::Env env, const Napi::Value& v, const std::string& arg) {
  return typed<float>(env, v, arg, napi_float32_array, "Float32Array");
}
View<int32_t> i32_array(Napi::Env env, const Napi::Value& v, const std::string& arg) {
  return typed<int32_t>(env, v, arg, napi_int32_array, "Int32Array");
}
View<uint16_t> u16_array(Napi::Env env, const Napi::Value& v, const std::string& arg) {
  return typed<uint16_t>(env, v, arg, napi_uint16_array, "Uint16Array");
}

void expect_length(Napi::Env env, size_t length, size_t expected, const std::string& arg,
                   const std::string& shape) {
  if (length != expected)
    throw_range(env, arg, "length " + std::to_string(expected) + " (" + shape + ")",
                "length " + std::to_string(length));
}

size_t count_of(Napi::Env env, size_t length, int64_t unit, const std::string& arg,
                const std::string& unit_name) {
  if (length % (size_t)unit != 0)
    throw_range(env, arg, "a length that is a multiple of " + unit_name + " (" + std::to_string(unit) + ")",
                "length " + std::to_string(length));
  return length / (size_t)unit;
}

int64_t integer(Napi::Env env, const Napi::Value& v, const std::string& arg, int64_t lo, int64_t hi) {
  const std::string range = "an integer between " + std::to_string(lo) + " and " + std::to_string(hi);
  if (!v.IsNumber()) throw_type(env, arg, range, v);
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || std::floor(d) != d || d < (double)lo || d > (double)hi)
    throw_range(env, arg, range, describe(v));
  return (int64_t)d;
}

Napi::Value option(const Napi::Value& opts, const char* key, const std::string& arg) {
  Napi::Env env = opts.Env();
  if (opts.IsUndefined() || opts.IsNull()) return env.Undefined();
  if (!opts.IsObject()) throw_type(env, arg, "an options object", opts);
  return opts.As<Napi::Object>().Get(key);
}

}  // namespace pfn
