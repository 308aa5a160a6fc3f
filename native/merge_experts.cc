// mergeExperts(bank, ids [n], weights [n], w [din*dout], layout: 0 in_out | 1 out_in, inPlace)
//   -> W' (a new array, or w itself when inPlace)
// With a bank on cuda every array is a DeviceTensor, W' too, and it runs on the device; the parse
// below is the same for both (native/backend.h).
#include <string.h>

#include "args.h"
#include "backend.h"
#include "lora_bank.h"
#include "ops.h"

namespace pfn {
namespace {

template <class P>
struct MergeJob : P::Job {
  std::shared_ptr<const typename P::Bank> bank;
  const int32_t* ids;
  const float* w;
  int32_t n;
  const float* src;  // the base weight; equal to dst when in place
  float* dst;
  size_t count;
  pf_layout layout;
  pf_status launch();
};

template <>
pf_status MergeJob<Host>::launch() {
  if (dst != src && count > 0) memcpy(dst, src, count * sizeof(float));
  return n == 0 ? PF_OK : pf_merge_experts(bank.get(), ids, w, n, dst, layout);
}

template <>
pf_status MergeJob<Device>::launch() {
  if (dst != src && count > 0) {
    // Queued on the stream, so the merge below reads the copy.
    const pf_status s = plugin->api->memcpy_d2d(dst, src, count * sizeof(float), plugin->stream);
    if (s != PF_OK) return s;
  }
  return n == 0 ? PF_OK : plugin->api->merge_experts(bank.get(), ids, w, n, dst, layout, plugin->stream);
}

template <class P>
MergeJob<P> parse(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  MergeJob<P> job;
  P::open(job, env, "mergeExperts on a cuda bank");
  job.bank = P::bank(job, info[0], "bank");
  const BankShape s = P::shape(job, job.bank.get());
  const Array<int32_t> ids = P::i32(job, info[1], "ids");
  const Array<float> w = P::f32(job, info[2], "weights");
  expect_length(env, w.length, ids.length, "weights", "n, as ids");
  const Array<float> base = P::f32(job, info[3], "w");
  expect_length(env, base.length, (size_t)(s.din * s.dout), "w", "din * dout");
  job.layout = (pf_layout)integer(env, info[4], "opts.layout", 0, 1);
  const bool in_place = info[5].ToBoolean().Value();
  // The kernels take n as int32 (an expert may appear more than once, so n is not bounded by E).
  if (ids.length > (size_t)INT32_MAX)
    throw_range(env, "ids", "at most " + std::to_string(INT32_MAX) + " entries", std::to_string(ids.length));
  job.n = (int32_t)ids.length;
  job.ids = ids.data;
  job.w = w.data;
  job.src = base.data;
  job.count = base.length;
  if (in_place) {
    job.dst = base.data;
    job.set_out(info[3]);
  } else {
    job.set_out(P::new_f32(job, env, base.length, &job.dst));
  }
  return job;
}

Napi::Value call(const Napi::CallbackInfo& info, bool async) {
  if (LoraBank::on_device(info.Env(), info[0], "bank")) return run_job(info.Env(), parse<Device>(info), async);
  return run_job(info.Env(), parse<Host>(info), async);
}

}  // namespace

Napi::Value MergeExperts(const Napi::CallbackInfo& info) { return call(info, false); }
Napi::Value MergeExpertsAsync(const Napi::CallbackInfo& info) { return call(info, true); }

}  // namespace pfn
