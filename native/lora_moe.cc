// loraMoe(bank, x [T, din], ids [T, k], weights [T, k], y? [T, dout]) -> y (a new zeroed array,
// or the given one accumulated into)
// With a bank on cuda every array is a DeviceTensor, y too, and it runs on the device; the parse
// below is the same for both (native/backend.h).
#include "args.h"
#include "backend.h"
#include "lora_bank.h"
#include "ops.h"

namespace pfn {
namespace {

template <class P>
struct MoeJob : P::Job {
  std::shared_ptr<const typename P::Bank> bank;
  const float* x;
  int64_t T, dout;
  const int32_t* ids;
  const float* w;
  int32_t k;
  float* y;
  bool fresh_y;  // y was made by this call: zero it before accumulating (device memory is not)
  pf_status launch();
};

template <>
pf_status MoeJob<Host>::launch() {
  return T == 0 ? PF_OK : pf_lora_moe(bank.get(), x, T, ids, w, k, y);  // a new Float32Array is zeroed
}

template <>
pf_status MoeJob<Device>::launch() {
  if (T == 0) return PF_OK;
  // A fresh y is zeroed on the stream, ahead of the op that accumulates into it.
  if (fresh_y) {
    const pf_status s = plugin->api->memset_(y, 0, (size_t)(T * dout) * sizeof(float), plugin->stream);
    if (s != PF_OK) return s;
  }
  return plugin->api->lora_moe(bank.get(), x, T, ids, w, k, y, plugin->stream);
}

// k from the length of ids for T tokens (1 when T = 0), or the RangeError naming ids.
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

template <class P>
MoeJob<P> parse(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  MoeJob<P> job;
  P::open(job, env, "loraMoe on a cuda bank");
  job.bank = P::bank(job, info[0], "bank");
  const BankShape s = P::shape(job, job.bank.get());
  const Array<float> x = P::f32(job, info[1], "x");
  const Array<int32_t> ids = P::i32(job, info[2], "ids");
  const Array<float> w = P::f32(job, info[3], "weights");
  job.T = (int64_t)count_of(env, x.length, s.din, "x", "din");
  job.k = moe_slots(env, job.T, ids.length, s.experts);
  expect_length(env, w.length, ids.length, "weights", "T * k, as ids");
  job.dout = s.dout;
  job.fresh_y = info[4].IsUndefined();
  if (job.fresh_y) {
    job.set_out(P::new_f32(job, env, (size_t)(job.T * s.dout), &job.y));
  } else {
    const Array<float> y = P::f32(job, info[4], "y");
    expect_length(env, y.length, (size_t)(job.T * s.dout), "y", "T * dout");
    job.y = y.data;
    job.set_out(info[4]);
  }
  job.x = x.data;
  job.ids = ids.data;
  job.w = w.data;
  return job;
}

Napi::Value call(const Napi::CallbackInfo& info, bool async) {
  if (LoraBank::on_device(info.Env(), info[0], "bank")) return run_job(info.Env(), parse<Device>(info), async);
  return run_job(info.Env(), parse<Host>(info), async);
}

}  // namespace

Napi::Value LoraMoe(const Napi::CallbackInfo& info) { return call(info, false); }
Napi::Value LoraMoeAsync(const Napi::CallbackInfo& info) { return call(info, true); }

}  // namespace pfn
