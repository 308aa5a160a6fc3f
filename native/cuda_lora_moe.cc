// loraMoe on the device: bank on cuda, x [T, din], ids [T, k], weights [T, k], y? [T, dout],
// every array a DeviceTensor -> y (a new zeroed DeviceTensor, or the given one accumulated into).
#include "args.h"
#include "cuda_job.h"
#include "cuda_ops.h"
#include "lora_bank.h"

namespace pfn {
namespace {

struct CudaMoeJob : CudaJob {
  std::shared_ptr<const pf_cuda_bank> bank;
  const float* x;
  int64_t T;
  const int32_t* ids;
  const float* w;
  int32_t k;
  float* y;
  bool zero_y;
  int64_t dout;
  pf_status queue() {
    if (T == 0) return PF_OK;
    // A fresh y is zeroed on the stream, ahead of the op that accumulates into it.
    if (zero_y) {
      const pf_status s = plugin->api->memset_(y, 0, (size_t)(T * dout) * sizeof(float), plugin->stream);
      if (s != PF_OK) return s;
    }
    return plugin->api->lora_moe(bank.get(), x, T, ids, w, k, y, plugin->stream);
  }
};

CudaMoeJob parse(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CudaMoeJob job;
  job.plugin = &require_cuda(env, "loraMoe on a cuda bank");
  job.bank = LoraBank::from_cuda(env, info[0], "bank");
  const BankShape s = shape_of(*job.plugin, job.bank.get());
  auto x = DeviceTensor::from(env, info[1], "x", ElemType::F32);
  auto ids = DeviceTensor::from(env, info[2], "ids", ElemType::I32);
  auto w = DeviceTensor::from(env, info[3], "weights", ElemType::F32);
  job.T = (int64_t)count_of(env, x->length, s.din, "x", "din");
  job.k = moe_slots(env, job.T, ids->length, s.experts);
  expect_length(env, w->length, ids->length, "weights", "T * k, as ids");
  job.dout = s.dout;
  Napi::Object y;
  if (info[4].IsUndefined()) {
    y = DeviceTensor::New(env, ElemType::F32, (size_t)(job.T * s.dout));
    job.zero_y = true;
  } else {
    auto vy = DeviceTensor::from(env, info[4], "y", ElemType::F32);
    expect_length(env, vy->length, (size_t)(job.T * s.dout), "y", "T * dout");
    y = info[4].As<Napi::Object>();
    job.zero_y = false;
  }
  job.x = job.hold<const float>(x);
  job.ids = job.hold<const int32_t>(ids);
  job.w = job.hold<const float>(w);
  job.y = job.hold<float>(DeviceTensor::from(env, y, "y", ElemType::F32));
  job.keep(info[0]);
  job.keep(info[1]);
  job.keep(info[2]);
  job.keep(info[3]);
  job.set_out(y);
  return job;
}

}  // namespace

Napi::Value CudaLoraMoe(const Napi::CallbackInfo& info, bool async) {
  CudaMoeJob job = parse(info);
  return async ? cuda_run_async(info.Env(), std::move(job)) : cuda_run_sync(info.Env(), job);
}

}  // namespace pfn
