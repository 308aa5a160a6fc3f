// loraMoe(bank, x [T, din], ids [T, k], weights [T, k], y? [T, dout]) -> y
// With a bank on cuda it runs on the device (native/cuda_lora_moe.cc).
#include "args.h"
#include "cuda_ops.h"
#include "device_tensor.h"
#include "job.h"
#include "lora_bank.h"
#include "ops.h"
#include "shape.h"

namespace pfn {
namespace {

struct MoeJob : Job {
  std::shared_ptr<const pf_bank> bank;
  const float* x;
  int64_t T;
  const int32_t* ids;
  const float* w;
  int32_t k;
  float* y;
  pf_status run() { return T == 0 ? PF_OK : pf_lora_moe(bank.get(), x, T, ids, w, k, y); }
};

}  // namespace

int32_t moe_slots(Napi::Env env, int64_t T, size_t ids_length, int64_t experts) {
  if (T == 0) {
    expect_length(env, ids_length, 0, "ids", "T * k with T = 0");
    return 1;
  }
  if (ids_length == 0 || ids_length % T != 0)
    throw_range(env, "ids", "length T * k with T = " + std::to_string(T) + " tokens",
                "length " + std::to_string(ids_length));
  const int64_t k = (int64_t)(ids_length / T);
  if (k > experts)
    throw_range(env, "ids", "at most experts (" + std::to_string(experts) + ") slots per token", std::to_string(k));
  return (int32_t)k;
}

namespace {

MoeJob parse(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  MoeJob job;
  job.bank = LoraBank::from(env, info[0], "bank");
  reject_device(env, info[1], "x", "Float32Array", kHostBankHint);
  reject_device(env, info[2], "ids", "Int32Array", kHostBankHint);
  reject_device(env, info[3], "weights", "Float32Array", kHostBankHint);
  reject_device(env, info[4], "y", "Float32Array", kHostBankHint);
  const BankShape s = shape_of(job.bank.get());
  View<float> x = f32_array(env, info[1], "x");
  View<int32_t> ids = i32_array(env, info[2], "ids");
  View<float> w = f32_array(env, info[3], "weights");
  job.T = (int64_t)count_of(env, x.length, s.din, "x", "din");
  job.k = moe_slots(env, job.T, ids.length, s.experts);
  expect_length(env, w.length, ids.length, "weights", "T * k, as ids");
  Napi::Float32Array y;
  if (info[4].IsUndefined()) {
    y = Napi::Float32Array::New(env, job.T * s.dout);
  } else {
    View<float> vy = f32_array(env, info[4], "y");
    expect_length(env, vy.length, job.T * s.dout, "y", "T * dout");
    y = info[4].As<Napi::Float32Array>();
  }
  job.x = x.data;
  job.ids = ids.data;
  job.w = w.data;
  job.y = job.T == 0 ? nullptr : y.Data();
  job.keep(x.value);
  job.keep(ids.value);
  job.keep(w.value);
  job.set_out(y);
  return job;
}

}  // namespace

Napi::Value LoraMoe(const Napi::CallbackInfo& info) {
  if (LoraBank::on_device(info.Env(), info[0], "bank")) return CudaLoraMoe(info, false);
  MoeJob job = parse(info);
  return run_sync(info.Env(), job);
}

Napi::Value LoraMoeAsync(const Napi::CallbackInfo& info) {
  if (LoraBank::on_device(info.Env(), info[0], "bank")) return CudaLoraMoe(info, true);
  return run_async(info.Env(), parse(info));
}

}  // namespace pfn
