// lora_moe's three paths share this interface: lora_moe.cu holds the entry point and the
// two-kernel decode path, lora_moe_fused.cu the one-kernel decode for a few tokens, and
// lora_moe_grouped.cu the expert-grouped tensor-core path for many.
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
// Whether the grouped path can run this call on this device (dtype, rank, T, capability).
bool moe_grouped_fits(const DeviceState& dev, const MoeCall& c);
// Queues the grouped path: sort (token, slot) pairs by expert per slot, one shrink kernel
// (tiles x din splits x slots, f32 partials), then one gate -> expand kernel per slot.
pf_status moe_grouped(const DeviceState& dev, const MoeCall& c, Scratch& scratch);

}  // namespace cuda
}  // namespace pf
#endif
