// info() / setThreads(n) / setSimd(name): run-time facts and knobs of the kernels.
// info() is one of the two places that open the CUDA plugin (the other: a device call).
#include "args.h"
#include "cuda_plugin.h"
#include "ops.h"

namespace pfn {

namespace {

// { available, reason?, library?, buildInfo?, devices?: [{ name, computeCapability, memoryBytes }] }
Napi::Object CudaInfo(Napi::Env env, const CudaPlugin& p) {
  Napi::Object c = Napi::Object::New(env);
  c.Set("available", Napi::Boolean::New(env, p.available));
  if (!p.available) c.Set("reason", Napi::String::New(env, p.reason));
  if (!p.library.empty()) c.Set("library", Napi::String::New(env, p.library));
  if (!p.build_info.empty()) c.Set("buildInfo", Napi::String::New(env, p.build_info));
  if (p.api) {
    Napi::Array devices = Napi::Array::New(env, p.devices.size());
    for (size_t i = 0; i < p.devices.size(); i++) {
      const CudaDevice& d = p.devices[i];
      Napi::Object o = Napi::Object::New(env);
      o.Set("name", Napi::String::New(env, d.name));
      o.Set("computeCapability", Napi::String::New(env, std::to_string(d.major) + "." + std::to_string(d.minor)));
      o.Set("memoryBytes", Napi::Number::New(env, (double)d.memory_bytes));
      devices.Set((uint32_t)i, o);
    }
    c.Set("devices", devices);
  }
  return c;
}

}  // namespace

Napi::Value Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  const CudaPlugin& p = cuda_plugin();
  Napi::Array backends = Napi::Array::New(env);
  backends.Set(0u, Napi::String::New(env, "cpu"));
  if (p.available) backends.Set(1u, Napi::String::New(env, "cuda"));
  o.Set("backends", backends);
  o.Set("simd", Napi::String::New(env, pf_simd_name()));
  o.Set("threads", Napi::Number::New(env, pf_num_threads()));
  o.Set("cuda", CudaInfo(env, p));
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
