#include "lora_bank.h"

#include <string>

#include "args.h"

namespace pfn {
namespace {
Napi::FunctionReference* g_constructor = nullptr;  // per-process: the addon is loaded once
}

Napi::Function LoraBank::Init(Napi::Env env) {
  Napi::Function fn = DefineClass(env, "LoraBank",
                                  {InstanceMethod("dispose", &LoraBank::Dispose),
                                   InstanceMethod("bytes", &LoraBank::Bytes)});
  g_constructor = new Napi::FunctionReference(Napi::Persistent(fn));
  return fn;
}

// new LoraBank({ experts, rank, din, dout, dtype: 0|1|2, a, b, scales?, ranks? })
LoraBank::LoraBank(const Napi::CallbackInfo& info) : Napi::ObjectWrap<LoraBank>(info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) throw_type(env, "options", "an options object", info[0]);
  Napi::Object o = info[0].As<Napi::Object>();
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
  pf_bank* raw = nullptr;
  const pf_status s = pf_bank_create((int32_t)experts, (int32_t)rank, (int32_t)din, (int32_t)dout,
                                     (pf_dtype)dtype, a, b, scales, ranks, &raw);
  if (s != PF_OK) throw status_error(env, s, pf_last_error());
  bank_.reset(raw, pf_bank_destroy);
  Napi::MemoryManagement::AdjustExternalMemory(env, (int64_t)pf_bank_bytes(raw));
}

std::shared_ptr<const pf_bank> LoraBank::from(Napi::Env env, const Napi::Value& v, const char* arg) {
  if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(g_constructor->Value()))
    throw_type(env, arg, "a LoraBank (kernels.createLoraBank)", v);
  LoraBank* self = LoraBank::Unwrap(v.As<Napi::Object>());
  if (!self->bank_) throw Napi::Error::New(env, std::string("The LoraBank passed as ") + arg + " is disposed");
  return self->bank_;
}

Napi::Value LoraBank::Dispose(const Napi::CallbackInfo& info) {
  if (bank_) {
    Napi::MemoryManagement::AdjustExternalMemory(info.Env(), -(int64_t)pf_bank_bytes(bank_.get()));
    bank_.reset();
  }
  return info.Env().Undefined();
}

Napi::Value LoraBank::Bytes(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), bank_ ? (double)pf_bank_bytes(bank_.get()) : 0.0);
}

}  // namespace pfn
