// topkSoftmax(logits [T, E], experts, k, renormalize) -> { ids [T, k], weights [T, k] }
// With a DeviceTensor for logits it runs on the device and ids and weights are DeviceTensors; the
// parse below is the same for both (native/backend.h). A bad row is the same RangeError on both.
#include "args.h"
#include "backend.h"
#include "ops.h"

namespace pfn {
namespace {

template <class P>
struct TopkJob : P::Job {
  const float* logits;
  int64_t T;
  int32_t E, k;
  bool renormalize;
  int32_t* ids;
  float* weights;
  pf_status launch();
};

template <>
pf_status TopkJob<Host>::launch() {
  return pf_topk_softmax(logits, T, E, k, renormalize, ids, weights, nullptr);
}

template <>
pf_status TopkJob<Device>::launch() {
  if (T == 0) return PF_OK;
  return plugin->api->topk_softmax(logits, T, E, k, renormalize, ids, weights, nullptr, plugin->stream);
}

template <class P>
TopkJob<P> parse(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  TopkJob<P> job;
  P::open(job, env, "topkSoftmax on a DeviceTensor");
  const Array<float> logits = P::f32(job, info[0], "logits");
  job.E = (int32_t)integer(env, info[1], "experts", 1, 1024);
  job.k = (int32_t)integer(env, info[2], "k", 1, job.E);
  job.T = (int64_t)count_of(env, logits.length, job.E, "logits", "experts");
  job.renormalize = info[3].ToBoolean().Value();
  job.logits = logits.data;
  Napi::Object out = Napi::Object::New(env);
  out.Set("ids", P::new_i32(job, env, (size_t)(job.T * job.k), &job.ids));
  out.Set("weights", P::new_f32(job, env, (size_t)(job.T * job.k), &job.weights));
  job.set_out(out);
  return job;
}

Napi::Value call(const Napi::CallbackInfo& info, bool async) {
  if (DeviceTensor::Is(info[0])) return run_job(info.Env(), parse<Device>(info), async);
  return run_job(info.Env(), parse<Host>(info), async);
}

}  // namespace

Napi::Value TopkSoftmax(const Napi::CallbackInfo& info) { return call(info, false); }
Napi::Value TopkSoftmaxAsync(const Napi::CallbackInfo& info) { return call(info, true); }

}  // namespace pfn
