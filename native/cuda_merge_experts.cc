// mergeExperts on the device: bank on cuda; ids [n], weights [n], w [din * dout], every array
// a DeviceTensor -> W' (a new DeviceTensor, or w itself when inPlace).
#include "args.h"
#include "cuda_job.h"
#include "cuda_ops.h"
#include "lora_bank.h"

namespace pfn {
namespace {

struct CudaMergeJob : CudaJob {
  std::shared_ptr<const pf_cuda_bank> bank;
  const int32_t* ids;
  const float* w;
  int32_t n;
  const float* src;  // the base weight; equal to dst when in place
  float* dst;
  size_t count;
  pf_layout layout;
  pf_status queue() {
    if (dst != src && count > 0) {
      // Queued on the stream, so the merge below reads the copy.
      const pf_status s = plugin->api->memcpy_d2d(dst, src, count * sizeof(float), plugin->stream);
      if (s != PF_OK) return s;
    }
    return n == 0 ? PF_OK : plugin->api->merge_experts(bank.get(), ids, w, n, dst, layout, plugin->stream);
  }
};

CudaMergeJob parse(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CudaMergeJob job;
  job.plugin = &require_cuda(env, "mergeExperts on a cuda bank");
  job.bank = LoraBank::from_cuda(env, info[0], "bank");
  const BankShape s = shape_of(*job.plugin, job.bank.get());
  auto ids = DeviceTensor::from(env, info[1], "ids", ElemType::I32);
  auto w = DeviceTensor::from(env, info[2], "weights", ElemType::F32);
  expect_length(env, w->length, ids->length, "weights", "n, as ids");
  auto base = DeviceTensor::from(env, info[3], "w", ElemType::F32);
  expect_length(env, base->length, (size_t)(s.din * s.dout), "w", "din * dout");
  job.layout = (pf_layout)integer(env, info[4], "opts.layout", 0, 1);
  const bool in_place = info[5].ToBoolean().Value();
  if (ids->length > (size_t)INT32_MAX)
    throw_range(env, "ids", "at most " + std::to_string(INT32_MAX) + " entries", std::to_string(ids->length));
  job.n = (int32_t)ids->length;
  job.ids = job.hold<const int32_t>(ids);
  job.w = job.hold<const float>(w);
  job.src = job.hold<const float>(base);
  job.count = base->length;
  if (in_place) {
    job.dst = const_cast<float*>(job.src);
    job.set_out(info[3]);
  } else {
    Napi::Object out = DeviceTensor::New(env, ElemType::F32, base->length);
    job.dst = job.hold<float>(DeviceTensor::from(env, out, "w", ElemType::F32));
    job.set_out(out);
  }
  job.keep(info[0]);
  job.keep(info[1]);
  job.keep(info[2]);
  job.keep(info[3]);
  return job;
}

}  // namespace

Napi::Value CudaMergeExperts(const Napi::CallbackInfo& info, bool async) {
  CudaMergeJob job = parse(info);
  return async ? cuda_run_async(info.Env(), std::move(job)) : cuda_run_sync(info.Env(), job);
}

}  // namespace pfn
