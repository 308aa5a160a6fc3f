#include "lora_bank.h"

#include <string>

#include "addon_data.h"
#include "args.h"
#include "cuda_plugin.h"
#include "device_tensor.h"

namespace pfn {
Napi::Function LoraBank::Init(Napi::Env env) {
  Napi::Function fn = DefineClass(env, "LoraBank",
                                  {InstanceMethod("dispose", &LoraBank::Dispose),
                                   InstanceMethod("bytes", &LoraBank::Bytes),
                                   InstanceAccessor("device", &LoraBank::Device, nullptr)});
  addon_data(env).lora_bank = Napi::Persistent(fn);
  return fn;
}

// new LoraBank({ experts, rank, din, dout, dtype: 0|1|2, a, b, scales?, ranks?, device?: 'cpu'|'cuda' })
// a, b, scales and ranks are host arrays either way: the CUDA bank packs and uploads them.
LoraBank::LoraBank(const Napi::CallbackInfo& info) : Napi::ObjectWrap<LoraBank>(info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) throw_type(env, "options", "an options object", info[0]);
  Napi::Object o = info[0].As<Napi::Object>();
  const Napi::Value device = o.Get("device");
  if (!device.IsUndefined()) {
    const std::string name = device.IsString() ? device.As<Napi::String>().Utf8Value() : "";
    if (name != "cpu" && name != "cuda") throw_type(env, "device", "'cpu' or 'cuda'", device);
    cuda_ = name == "cuda";
    // Before the arrays: on a machine without a device this is the error that explains.
    if (cuda_) require_cuda(env, "createLoraBank({ device: 'cuda' })");
  }
  for (const char* arg : {"a", "b", "scales", "ranks"})
    reject_device(env, o.Get(arg), arg, "a host typed array",
                  "a bank is created from host arrays, also with device: 'cuda'; use .toHost()");
  const int64_t kMax = 1 << 24;
  const int64_t experts = integer(env, o.Get("experts"), "experts", 1, 1024);
  const int64_t rank = integer(env, o.Get("rank"), "rank", 1, 4096);
  const int64_t din = integer(env, o.Get("din"), "din", 1, kMax);
  const int64_t dout = integer(env, o.Get("dout"), "dout", 1, kMax);
  const int64_t dtype = integer(env, o.Get("dtype"), "dtype", 0, 2);
  const size_t a_len = (size_t)(experts * rank * din), b_len = (size_t)(experts * dout * rank);
  const void *a = nullptr, *b = nullptr;
  if (dtype == PF_F32) {
    View<float> va = f32_array(env, o.Get("a"), "a"), vb = f32_array(env, o.Get("b"), "b");
    expect_length(env, va.length, a_len, "a", "experts * rank * din");
    expect_length(env, vb.length, b_len, "b", "experts * dout * rank");
    a = va.data;
    b = vb.data;
  } else {
    View<uint16_t> va = u16_array(env, o.Get("a"), "a"), vb = u16_array(env, o.Get("b"), "b");
    expect_length(env, va.length, a_len, "a", "experts * rank * din");
    expect_length(env, vb.length, b_len, "b", "experts * dout * rank");
    a = va.data;
    b = vb.data;
  }
  const float* scales = nullptr;
  const int32_t* ranks = nullptr;
  if (!o.Get("scales").IsUndefined()) {
    View<float> v = f32_array(env, o.Get("scales"), "scales");
    expect_length(env, v.length, (size_t)experts, "scales", "experts");
    scales = v.data;
  }
  if (!o.Get("ranks").IsUndefined()) {
    View<int32_t> v = i32_array(env, o.Get("ranks"), "ranks");
    expect_length(env, v.length, (size_t)experts, "ranks", "experts");
    ranks = v.data;
  }
  if (cuda_) {
    create_cuda(env, (int32_t)experts, (int32_t)rank, (int32_t)din, (int32_t)dout, (pf_dtype)dtype, a, b, scales, ranks);
    return;
  }
  pf_bank* raw = nullptr;
  const pf_status s = pf_bank_create((int32_t)experts, (int32_t)rank, (int32_t)din, (int32_t)dout,
                                     (pf_dtype)dtype, a, b, scales, ranks, &raw);
  if (s != PF_OK) throw status_error(env, s, pf_last_error());
  bank_.reset(raw, pf_bank_destroy);
  Napi::MemoryManagement::AdjustExternalMemory(env, (int64_t)pf_bank_bytes(raw));
}

void LoraBank::create_cuda(Napi::Env env, int32_t experts, int32_t rank, int32_t din, int32_t dout, pf_dtype dtype,
                           const void* a, const void* b, const float* scales, const int32_t* ranks) {
  const CudaPlugin& p = cuda_plugin();
  pf_cuda_bank* raw = nullptr;
  pf_status s = cuda_enter(p);
  if (s == PF_OK) s = p.api->bank_create(experts, rank, din, dout, dtype, a, b, scales, ranks, &raw);
  if (s != PF_OK) throw status_error(env, s, cuda_error(p));
  const pf_cuda_api* api = p.api;
  cuda_bank_.reset(raw, [api](pf_cuda_bank* bank) { api->bank_destroy(bank); });
}

LoraBank* LoraBank::unwrap(Napi::Env env, const Napi::Value& v, const char* arg) {
  if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(addon_data(env).lora_bank.Value()))
    throw_type(env, arg, "a LoraBank (kernels.createLoraBank)", v);
  return LoraBank::Unwrap(v.As<Napi::Object>());
}

bool LoraBank::on_device(Napi::Env env, const Napi::Value& v, const char* arg) { return unwrap(env, v, arg)->cuda_; }

std::shared_ptr<const pf_bank> LoraBank::from(Napi::Env env, const Napi::Value& v, const char* arg) {
  LoraBank* self = unwrap(env, v, arg);
  if (self->cuda_) throw Napi::TypeError::New(env, std::string("Expected a LoraBank on the CPU for ") + arg +
                                                      " but received a LoraBank on cuda");
  if (!self->bank_) throw Napi::Error::New(env, std::string("The LoraBank passed as ") + arg + " is disposed");
  return self->bank_;
}

std::shared_ptr<const pf_cuda_bank> LoraBank::from_cuda(Napi::Env env, const Napi::Value& v, const char* arg) {
  LoraBank* self = unwrap(env, v, arg);
  if (!self->cuda_) throw Napi::TypeError::New(env, std::string("Expected a LoraBank on cuda for ") + arg +
                                                       " but received a LoraBank on the CPU");
  if (!self->cuda_bank_) throw Napi::Error::New(env, std::string("The LoraBank passed as ") + arg + " is disposed");
  return self->cuda_bank_;
}

Napi::Value LoraBank::Dispose(const Napi::CallbackInfo& info) {
  cuda_bank_.reset();  // device memory: no external-memory accounting (it is not the JS heap's)
  if (bank_) {
    Napi::MemoryManagement::AdjustExternalMemory(info.Env(), -(int64_t)pf_bank_bytes(bank_.get()));
    bank_.reset();
  }
  return info.Env().Undefined();
}

Napi::Value LoraBank::Bytes(const Napi::CallbackInfo& info) {
  if (cuda_) return Napi::Number::New(info.Env(), cuda_bank_ ? (double)cuda_plugin().api->bank_bytes(cuda_bank_.get()) : 0.0);
  return Napi::Number::New(info.Env(), bank_ ? (double)pf_bank_bytes(bank_.get()) : 0.0);
}

Napi::Value LoraBank::Device(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), cuda_ ? "cuda" : "cpu");
}

}  // namespace pfn
