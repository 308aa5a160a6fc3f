// topkSoftmax on the device: logits DeviceTensor f32 [T, E] -> { ids: DeviceTensor i32 [T, k],
// weights: DeviceTensor f32 [T, k] }. A bad row is the same RangeError as on the CPU.
#include "args.h"
#include "cuda_job.h"
#include "cuda_ops.h"

namespace pfn {
namespace {

struct CudaTopkJob : CudaJob {
  const float* logits;
  int64_t T;
  int32_t E, k;
  bool renormalize;
  int32_t* ids;
  float* weights;
  pf_status queue() {
    if (T == 0) return PF_OK;
    return plugin->api->topk_softmax(logits, T, E, k, renormalize, ids, weights, nullptr, plugin->stream);
  }
};

CudaTopkJob parse(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CudaTopkJob job;
  job.plugin = &require_cuda(env, "topkSoftmax on a DeviceTensor");
  auto logits = DeviceTensor::from(env, info[0], "logits", ElemType::F32);
  job.E = (int32_t)integer(env, info[1], "experts", 1, 1024);
  job.k = (int32_t)integer(env, info[2], "k", 1, job.E);
  job.T = (int64_t)count_of(env, logits->length, job.E, "logits", "experts");
  job.renormalize = info[3].ToBoolean().Value();
  job.logits = job.hold<const float>(logits);
  Napi::Object ids = DeviceTensor::New(env, ElemType::I32, (size_t)(job.T * job.k));
  Napi::Object weights = DeviceTensor::New(env, ElemType::F32, (size_t)(job.T * job.k));
  job.ids = job.hold<int32_t>(DeviceTensor::from(env, ids, "ids", ElemType::I32));
  job.weights = job.hold<float>(DeviceTensor::from(env, weights, "weights", ElemType::F32));
  Napi::Object out = Napi::Object::New(env);
  out.Set("ids", ids);
  out.Set("weights", weights);
  job.keep(info[0]);
  job.set_out(out);
  return job;
}

}  // namespace

Napi::Value CudaTopkSoftmax(const Napi::CallbackInfo& info, bool async) {
  CudaTopkJob job = parse(info);
  return async ? cuda_run_async(info.Env(), std::move(job)) : cuda_run_sync(info.Env(), job);
}

}  // namespace pfn
