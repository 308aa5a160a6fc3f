// setCudaOption(name, value) / getCudaOption(name): the CUDA library's process-wide options
// (personafuse_cuda.h): sync_checks, check_pointers and the lora_moe path choices (moe_*).
#include "args.h"
#include "cuda_plugin.h"
#include "ops.h"

namespace pfn {

Napi::Value CudaSetOption(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const CudaPlugin& p = require_cuda(env, "setCudaOption");
  if (!info[0].IsString()) throw_type(env, "name", "an option name (string)", info[0]);
  const int64_t value = integer(env, info[1], "value", -(int64_t(1) << 40), int64_t(1) << 40);
  const pf_status s = p.api->set_option(info[0].As<Napi::String>().Utf8Value().c_str(), value);
  if (s != PF_OK) throw status_error(env, s, cuda_error(p));
  return env.Undefined();
}

Napi::Value CudaGetOption(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const CudaPlugin& p = require_cuda(env, "getCudaOption");
  if (!info[0].IsString()) throw_type(env, "name", "an option name (string)", info[0]);
  int64_t value = 0;
  const pf_status s = p.api->get_option(info[0].As<Napi::String>().Utf8Value().c_str(), &value);
  if (s != PF_OK) throw status_error(env, s, cuda_error(p));
  return Napi::Number::New(env, (double)value);
}

}  // namespace pfn
