// lora_moe's paths share this interface: lora_moe.cu holds the entry point and the two-kernel
// decode path, lora_moe_fused.cu the one-kernel decode for a few tokens, and
// lora_moe_grouped.cu the tensor-core paths for many, grouped by expert or dense.
#ifndef PF_CUDA_LORA_MOE_CUH
#define PF_CUDA_LORA_MOE_CUH

#include "bank.cuh"
#include "runtime.cuh"

namespace pf {
namespace cuda {

struct MoeCall {
  const pf_cuda_bank* bank;
  const float* x;       // [T, din]
  int64_t T;
  const int32_t* ids;   // [T, k]
  const float* w;       // [T, k]
  int32_t k;
  float* y;             // [T, dout]
  unsigned long long* fault;
  cudaStream_t stream;
};

// Whether the fused one-kernel path takes this call (T up to moe_fused_max_tokens, and its
// shared memory of k * rank gates fits without opt-in).
bool moe_fused_fits(const MoeCall& c);
// Queues it: one launch, no scratch memory.
pf_status moe_fused(const DeviceState& dev, const MoeCall& c);
// Whether the dense tensor-core path takes this call (T from moe_prefill_min_tokens, f16/bf16,
// the bank's C = Σ r_e columns up to moe_dense_max_columns and at most 256, E <= 64).
bool moe_dense_fits(const DeviceState& dev, const MoeCall& c);
// Queues it: a data-check pass, one shrink kernel (token tiles x din splits x column blocks)
// and one gate -> expand kernel, over every expert's columns with each token's gates as a mask.
pf_status moe_dense(const DeviceState& dev, const MoeCall& c, Scratch& scratch);
// Whether the grouped path can run this call on this device (dtype, rank, T, capability).
bool moe_grouped_fits(const DeviceState& dev, const MoeCall& c);
// Queues the grouped path: sort (token, slot) pairs by expert per slot, one shrink kernel
// (tiles x din splits x slots, f32 partials), then one gate -> expand kernel per slot.
pf_status moe_grouped(const DeviceState& dev, const MoeCall& c, Scratch& scratch);

}  // namespace cuda
}  // namespace pf
#endif
