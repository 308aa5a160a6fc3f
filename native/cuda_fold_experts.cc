// foldExperts on the device: bank on cuda; ids [B, k], weights [B, k], a [S, din, R],
// b [S, R, dout], slots? [B], every array a DeviceTensor; a and b are written in place.
#include "args.h"
#include "cuda_job.h"
#include "cuda_ops.h"
#include "lora_bank.h"

namespace pfn {
namespace {

struct CudaFoldJob : CudaJob {
  std::shared_ptr<const pf_cuda_bank> bank;
  const int32_t* ids;
  const float* w;
  int64_t B, num_slots;
  int32_t k, R;
  const int32_t* slots;
  float* a;
  float* b;
  pf_status queue() {
    if (B == 0) return PF_OK;
    return plugin->api->fold_experts(bank.get(), ids, w, B, k, slots, num_slots, R, a, b, plugin->stream);
  }
};

CudaFoldJob parse(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CudaFoldJob job;
  job.plugin = &require_cuda(env, "foldExperts on a cuda bank");
  job.bank = LoraBank::from_cuda(env, info[0], "bank");
  const BankShape s = shape_of(*job.plugin, job.bank.get());
  auto ids = DeviceTensor::from(env, info[1], "ids", ElemType::I32);
  auto w = DeviceTensor::from(env, info[2], "weights", ElemType::F32);
  job.k = (int32_t)integer(env, info[3], "k", 1, s.experts);
  job.B = (int64_t)count_of(env, ids->length, job.k, "ids", "k");
  expect_length(env, w->length, ids->length, "weights", "B * k, as ids");
  auto a = DeviceTensor::from(env, info[4], "out.a", ElemType::F32);
  auto b = DeviceTensor::from(env, info[5], "out.b", ElemType::F32);
  job.R = (int32_t)integer(env, info[6], "out.rankCapacity", job.k * s.rank, 1 << 20);
  const int64_t a_slot = s.din * job.R, b_slot = (int64_t)job.R * s.dout;
  job.num_slots = (int64_t)count_of(env, a->length, a_slot, "out.a", "din * rankCapacity");
  expect_length(env, b->length, (size_t)(job.num_slots * b_slot), "out.b",
                "numSlots * rankCapacity * dout with numSlots = " + std::to_string(job.num_slots));
  job.slots = nullptr;
  if (!info[7].IsUndefined()) {
    auto slots = DeviceTensor::from(env, info[7], "out.slots", ElemType::I32);
    expect_length(env, slots->length, (size_t)job.B, "out.slots", "B, one slot per request");
    job.slots = job.hold<const int32_t>(slots);
    job.keep(info[7]);
  } else if (job.num_slots < job.B) {
    throw_range(env, "out.a", "room for " + std::to_string(job.B) + " slots (one per request)",
                std::to_string(job.num_slots) + " slots");
  }
  job.ids = job.hold<const int32_t>(ids);
  job.w = job.hold<const float>(w);
  job.a = job.hold<float>(a);
  job.b = job.hold<float>(b);
  for (int i = 0; i < 6; i++) job.keep(info[i]);
  return job;
}

}  // namespace

Napi::Value CudaFoldExperts(const Napi::CallbackInfo& info, bool async) {
  CudaFoldJob job = parse(info);
  return async ? cuda_run_async(info.Env(), std::move(job)) : cuda_run_sync(info.Env(), job);
}

}  // namespace pfn
