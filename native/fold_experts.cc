// foldExperts(bank, ids [B, k], weights [B, k], k, a [S, din, R], b [S, R, dout], R, slots? [B])
// a and b are written in place. With a bank on cuda every array is a DeviceTensor and it runs on
// the device; the parse below is the same for both (native/backend.h).
#include "args.h"
#include "backend.h"
#include "lora_bank.h"
#include "ops.h"

namespace pfn {
namespace {

template <class P>
struct FoldJob : P::Job {
  std::shared_ptr<const typename P::Bank> bank;
  const int32_t* ids;
  const float* w;
  int64_t B, num_slots;
  int32_t k, R;
  const int32_t* slots;
  float* a;
  float* b;
  pf_status launch();
};

template <>
pf_status FoldJob<Host>::launch() {
  return B == 0 ? PF_OK : pf_fold_experts(bank.get(), ids, w, B, k, slots, num_slots, R, a, b);
}

template <>
pf_status FoldJob<Device>::launch() {
  if (B == 0) return PF_OK;
  return plugin->api->fold_experts(bank.get(), ids, w, B, k, slots, num_slots, R, a, b, plugin->stream);
}

template <class P>
FoldJob<P> parse(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  FoldJob<P> job;
  P::open(job, env, "foldExperts on a cuda bank");
  job.bank = P::bank(job, info[0], "bank");
  const BankShape s = P::shape(job, job.bank.get());
  const Array<int32_t> ids = P::i32(job, info[1], "ids");
  const Array<float> w = P::f32(job, info[2], "weights");
  job.k = (int32_t)integer(env, info[3], "k", 1, s.experts);
  job.B = (int64_t)count_of(env, ids.length, job.k, "ids", "k");
  expect_length(env, w.length, ids.length, "weights", "B * k, as ids");
  const Array<float> a = P::f32(job, info[4], "out.a");
  const Array<float> b = P::f32(job, info[5], "out.b");
  job.R = (int32_t)integer(env, info[6], "out.rankCapacity", job.k * s.rank, 1 << 20);
  const int64_t a_slot = s.din * job.R, b_slot = (int64_t)job.R * s.dout;
  job.num_slots = (int64_t)count_of(env, a.length, a_slot, "out.a", "din * rankCapacity");
  expect_length(env, b.length, (size_t)(job.num_slots * b_slot), "out.b",
                "numSlots * rankCapacity * dout with numSlots = " + std::to_string(job.num_slots));
  job.slots = nullptr;
  if (!info[7].IsUndefined()) {
    const Array<int32_t> slots = P::i32(job, info[7], "out.slots");
    expect_length(env, slots.length, (size_t)job.B, "out.slots", "B, one slot per request");
    job.slots = slots.data;
  } else if (job.num_slots < job.B) {
    throw_range(env, "out.a", "room for " + std::to_string(job.B) + " slots (one per request)",
                std::to_string(job.num_slots) + " slots");
  }
  job.ids = ids.data;
  job.w = w.data;
  job.a = a.data;
  job.b = b.data;
  return job;
}

Napi::Value call(const Napi::CallbackInfo& info, bool async) {
  if (LoraBank::on_device(info.Env(), info[0], "bank")) return run_job(info.Env(), parse<Device>(info), async);
  return run_job(info.Env(), parse<Host>(info), async);
}

}  // namespace

Napi::Value FoldExperts(const Napi::CallbackInfo& info) { return call(info, false); }
Napi::Value FoldExpertsAsync(const Napi::CallbackInfo& info) { return call(info, true); }

}  // namespace pfn
