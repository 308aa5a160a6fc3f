// foldExperts(bank, ids [B, k], weights [B, k], k, a [S, din, R], b [S, R, dout], R, slots? [B])
// With a bank on cuda it runs on the device (native/cuda_fold_experts.cc).
#include "args.h"
#include "cuda_ops.h"
#include "device_tensor.h"
#include "job.h"
#include "lora_bank.h"
#include "ops.h"
#include "shape.h"

namespace pfn {
namespace {

struct FoldJob : Job {
  std::shared_ptr<const pf_bank> bank;
  const int32_t* ids;
  const float* w;
  int64_t B, num_slots;
  int32_t k, R;
  const int32_t* slots;
  float* a;
  float* b;
  pf_status run() {
    return B == 0 ? PF_OK : pf_fold_experts(bank.get(), ids, w, B, k, slots, num_slots, R, a, b);
  }
};

FoldJob parse(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  FoldJob job;
  job.bank = LoraBank::from(env, info[0], "bank");
  reject_device(env, info[1], "ids", "Int32Array", kHostBankHint);
  reject_device(env, info[2], "weights", "Float32Array", kHostBankHint);
  reject_device(env, info[4], "out.a", "Float32Array", kHostBankHint);
  reject_device(env, info[5], "out.b", "Float32Array", kHostBankHint);
  reject_device(env, info[7], "out.slots", "Int32Array", kHostBankHint);
  const BankShape s = shape_of(job.bank.get());
  View<int32_t> ids = i32_array(env, info[1], "ids");
  View<float> w = f32_array(env, info[2], "weights");
  job.k = (int32_t)integer(env, info[3], "k", 1, s.experts);
  job.B = (int64_t)count_of(env, ids.length, job.k, "ids", "k");
  expect_length(env, w.length, ids.length, "weights", "B * k, as ids");
  View<float> a = f32_array(env, info[4], "out.a");
  View<float> b = f32_array(env, info[5], "out.b");
  job.R = (int32_t)integer(env, info[6], "out.rankCapacity", job.k * s.rank, 1 << 20);
  const int64_t a_slot = s.din * job.R, b_slot = (int64_t)job.R * s.dout;
  job.num_slots = (int64_t)count_of(env, a.length, a_slot, "out.a", "din * rankCapacity");
  expect_length(env, b.length, job.num_slots * b_slot, "out.b",
                "numSlots * rankCapacity * dout with numSlots = " + std::to_string(job.num_slots));
  job.slots = nullptr;
  if (!info[7].IsUndefined()) {
    View<int32_t> slots = i32_array(env, info[7], "out.slots");
    expect_length(env, slots.length, job.B, "out.slots", "B, one slot per request");
    job.slots = slots.data;
    job.keep(slots.value);
  } else if (job.num_slots < job.B) {
    throw_range(env, "out.a", "room for " + std::to_string(job.B) + " slots (one per request)",
                std::to_string(job.num_slots) + " slots");
  }
  job.ids = ids.data;
  job.w = w.data;
  job.a = a.data;
  job.b = b.data;
  job.keep(ids.value);
  job.keep(w.value);
  job.keep(a.value);
  job.keep(b.value);
  return job;
}

}  // namespace

Napi::Value FoldExperts(const Napi::CallbackInfo& info) {
  if (LoraBank::on_device(info.Env(), info[0], "bank")) return CudaFoldExperts(info, false);
  FoldJob job = parse(info);
  return run_sync(info.Env(), job);
}

Napi::Value FoldExpertsAsync(const Napi::CallbackInfo& info) {
  if (LoraBank::on_device(info.Env(), info[0], "bank")) return CudaFoldExperts(info, true);
  return run_async(info.Env(), parse(info));
}

}  // namespace pfn
