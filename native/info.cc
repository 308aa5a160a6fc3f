// info() / setThreads(n) / setSimd(name): run-time facts and knobs of the CPU backend.
#include "args.h"
#include "ops.h"

namespace pfn {

Napi::Value Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  Napi::Array backends = Napi::Array::New(env, 1);
  backends.Set(0u, Napi::String::New(env, "cpu"));
  o.Set("backends", backends);
  o.Set("simd", Napi::String::New(env, pf_simd_name()));
  o.Set("threads", Napi::Number::New(env, pf_num_threads()));
  return o;
}

Napi::Value SetThreads(const Napi::CallbackInfo& info) {
  pf_set_num_threads((int)integer(info.Env(), info[0], "threads", 0, 1024));
  return info.Env().Undefined();
}

Napi::Value SetSimd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) throw_type(env, "simd", "one of scalar, avx2, avx512", info[0]);
  const pf_status s = pf_set_simd(info[0].As<Napi::String>().Utf8Value().c_str());
  if (s != PF_OK) throw status_error(env, s, pf_last_error());
  return Napi::String::New(env, pf_simd_name());
}

}  // namespace pfn
