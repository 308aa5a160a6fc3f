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
  if (x.length % s.din != 0)
    throw_range(env, "x", "a length that is a multiple of din (" + std::to_string(s.din) + ")",
                "length " + std::to_string(x.length));
  job.T = (int64_t)(x.length / s.din);
  if (job.T > 0) {
    if (ids.length == 0 || ids.length % job.T != 0)
      throw_range(env, "ids", "length T * k with T = " + std::to_string(job.T) + " tokens",
                  "length " + std::to_string(ids.length));
    const int64_t k = (int64_t)(ids.length / job.T);
    if (k > s.experts)
      throw_range(env, "ids", "at most experts (" + std::to_string(s.experts) + ") slots per token",
                  std::to_string(k));
    job.k = (int32_t)k;
  } else {
    job.k = 1;
    expect_length(env, ids.length, 0, "ids", "T * k with T = 0");
  }
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
