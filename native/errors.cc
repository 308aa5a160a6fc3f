#include "errors.h"

namespace pfn {

std::string describe(const Napi::Value& v) {
  if (v.IsUndefined()) return "undefined";
  if (v.IsNull()) return "null";
  if (v.IsTypedArray()) {
    static const char* names[] = {"Int8Array",   "Uint8Array",   "Uint8ClampedArray", "Int16Array",
                                  "Uint16Array", "Int32Array",   "Uint32Array",       "Float32Array",
                                  "Float64Array", "BigInt64Array", "BigUint64Array"};
    const Napi::TypedArray arr = v.As<Napi::TypedArray>();
    const int type = (int)arr.TypedArrayType();
    const std::string name = type >= 0 && type < 11 ? names[type] : "TypedArray";
    return name + " of length " + std::to_string(arr.ElementLength());
  }
  if (v.IsArray()) return "Array of length " + std::to_string(v.As<Napi::Array>().Length());
  if (v.IsNumber()) {
    const std::string s = v.ToString().Utf8Value();
    return s + " of type number";
  }
  if (v.IsString()) return "'" + v.As<Napi::String>().Utf8Value() + "' of type string";
  if (v.IsBoolean()) return std::string(v.As<Napi::Boolean>().Value() ? "true" : "false") + " of type boolean";
  if (v.IsFunction()) return "a function";
  if (v.IsObject()) return "an object";
  return "a value of another type";
}

void throw_type(Napi::Env env, const std::string& arg, const std::string& expected,
                const Napi::Value& received) {
  throw Napi::TypeError::New(env, "Expected " + expected + " for " + arg + " but received " + describe(received));
}

void throw_range(Napi::Env env, const std::string& arg, const std::string& expected,
                 const std::string& received) {
  throw Napi::RangeError::New(env, "Expected " + expected + " for " + arg + " but received " + received);
}

Napi::Error status_error(Napi::Env env, pf_status status, const std::string& message) {
  if (status == PF_ERR_ARGUMENT || status == PF_ERR_VALUE) return Napi::RangeError::New(env, message);
  return Napi::Error::New(env, std::string(pf_status_name(status)) + ": " + message);
}

}  // namespace pfn
