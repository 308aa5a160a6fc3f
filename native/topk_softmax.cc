// topkSoftmax(logits: Float32Array [T, E], experts, k, renormalize) -> { ids, weights }
// With a DeviceTensor for logits it runs on the device (native/cuda_topk_softmax.cc).
#include "args.h"
#include "cuda_ops.h"
#include "device_tensor.h"
#include "job.h"
#include "ops.h"

namespace pfn {
namespace {

struct TopkJob : Job {
  const float* logits;
  int64_t T;
  int32_t E, k;
  bool renormalize;
  int32_t* ids;
  float* weights;
  pf_status run() { return pf_topk_softmax(logits, T, E, k, renormalize, ids, weights, nullptr); }
};

TopkJob parse(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  TopkJob job;
  View<float> logits = f32_array(env, info[0], "logits");
  job.E = (int32_t)integer(env, info[1], "experts", 1, 1024);
  job.k = (int32_t)integer(env, info[2], "k", 1, job.E);
  job.T = (int64_t)count_of(env, logits.length, job.E, "logits", "experts");
  job.renormalize = info[3].ToBoolean().Value();
  job.logits = logits.data;
  Napi::Int32Array ids = Napi::Int32Array::New(env, job.T * job.k);
  Napi::Float32Array weights = Napi::Float32Array::New(env, job.T * job.k);
  job.ids = ids.Data();
  job.weights = weights.Data();
  Napi::Object out = Napi::Object::New(env);
  out.Set("ids", ids);
  out.Set("weights", weights);
  job.keep(logits.value);
  job.set_out(out);
  return job;
}

}  // namespace

Napi::Value TopkSoftmax(const Napi::CallbackInfo& info) {
  if (DeviceTensor::Is(info[0])) return CudaTopkSoftmax(info, false);
  TopkJob job = parse(info);
  return run_sync(info.Env(), job);
}

Napi::Value TopkSoftmaxAsync(const Napi::CallbackInfo& info) {
  if (DeviceTensor::Is(info[0])) return CudaTopkSoftmax(info, true);
  return run_async(info.Env(), parse(info));
}

}  // namespace pfn
