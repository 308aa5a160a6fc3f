// mergeExperts(bank, ids [n], weights [n], w [din*dout], layout: 0 in_out | 1 out_in, inPlace)
//   -> W' (a new Float32Array, or w itself when inPlace)
// With a bank on cuda it runs on the device (native/cuda_merge_experts.cc).
#include <string.h>

#include "args.h"
#include "cuda_ops.h"
#include "device_tensor.h"
#include "job.h"
#include "lora_bank.h"
#include "ops.h"
#include "shape.h"

namespace pfn {
namespace {

struct MergeJob : Job {
  std::shared_ptr<const pf_bank> bank;
  const int32_t* ids;
  const float* w;
  int32_t n;
  const float* src;  // the base weight; equal to dst when in place
  float* dst;
  size_t count;
  pf_layout layout;
  pf_status run() {
    if (dst != src && count > 0) memcpy(dst, src, count * sizeof(float));
    return n == 0 ? PF_OK : pf_merge_experts(bank.get(), ids, w, n, dst, layout);
  }
};

MergeJob parse(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  MergeJob job;
  job.bank = LoraBank::from(env, info[0], "bank");
  reject_device(env, info[1], "ids", "Int32Array", kHostBankHint);
  reject_device(env, info[2], "weights", "Float32Array", kHostBankHint);
  reject_device(env, info[3], "w", "Float32Array", kHostBankHint);
  const BankShape s = shape_of(job.bank.get());
  View<int32_t> ids = i32_array(env, info[1], "ids");
  View<float> w = f32_array(env, info[2], "weights");
  expect_length(env, w.length, ids.length, "weights", "n, as ids");
  View<float> base = f32_array(env, info[3], "w");
  expect_length(env, base.length, (size_t)(s.din * s.dout), "w", "din * dout");
  job.layout = (pf_layout)integer(env, info[4], "opts.layout", 0, 1);
  const bool in_place = info[5].ToBoolean().Value();
  job.n = (int32_t)ids.length;
  job.ids = ids.data;
  job.w = w.data;
  job.src = base.data;
  job.count = base.length;
  if (in_place) {
    job.dst = base.data;
    job.set_out(base.value);
  } else {
    Napi::Float32Array out = Napi::Float32Array::New(env, base.length);
    job.dst = out.Data();
    job.set_out(out);
  }
  job.keep(ids.value);
  job.keep(w.value);
  job.keep(base.value);
  return job;
}

}  // namespace

Napi::Value MergeExperts(const Napi::CallbackInfo& info) {
  if (LoraBank::on_device(info.Env(), info[0], "bank")) return CudaMergeExperts(info, false);
  MergeJob job = parse(info);
  return run_sync(info.Env(), job);
}

Napi::Value MergeExpertsAsync(const Napi::CallbackInfo& info) {
  if (LoraBank::on_device(info.Env(), info[0], "bank")) return CudaMergeExperts(info, true);
  return run_async(info.Env(), parse(info));
}

}  // namespace pfn
