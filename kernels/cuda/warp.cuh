// Device-side building blocks: the warp butterfly over the PF_HD combine steps of
// lane_math.h, and 16-byte loads of weights. lane_math_test.cc emulates the same butterfly
// over 32 host "lanes" (partner = lane ^ offset, offsets width/2 .. 1).
#ifndef PF_CUDA_WARP_CUH
#define PF_CUDA_WARP_CUH

#include <stdint.h>

#include "../common/lane_math.h"

namespace pf {
namespace cuda {

constexpr unsigned kFullMask = 0xffffffffu;

// All-reduce over groups of `width` consecutive lanes (a power of two <= 32); `mask` names
// the lanes taking part (the whole group must).
__device__ __forceinline__ float group_sum(float v, unsigned mask, int width) {
  for (int off = width >> 1; off > 0; off >>= 1) v = combine_sum(v, __shfl_xor_sync(mask, v, off, width));
  return v;
}

__device__ __forceinline__ float group_max(float v, unsigned mask, int width) {
  for (int off = width >> 1; off > 0; off >>= 1) v = combine_max(v, __shfl_xor_sync(mask, v, off, width));
  return v;
}

__device__ __forceinline__ void group_best(float* v, int32_t* id, unsigned mask, int width) {
  for (int off = width >> 1; off > 0; off >>= 1) {
    const float ov = __shfl_xor_sync(mask, *v, off, width);
    const int32_t oid = __shfl_xor_sync(mask, *id, off, width);
    combine_best(v, id, ov, oid);
  }
}

__device__ __forceinline__ float warp_sum(float v) { return group_sum(v, kFullMask, 32); }

// 16 bytes of read-only data (p 16-byte aligned) as four 32-bit words.
__device__ __forceinline__ void load16(const void* p, uint32_t w[4]) {
  const uint4 v = __ldg(static_cast<const uint4*>(p));
  w[0] = v.x;
  w[1] = v.y;
  w[2] = v.z;
  w[3] = v.w;
}

// Vec16<DT>::N weights from element `idx` of a dtype-DT array (idx a multiple of N).
template <int DT>
__device__ __forceinline__ void load_weights16(const void* base, int64_t idx, float* out) {
  uint32_t w[4];
  load16(static_cast<const char*>(base) + idx * (DT == kF32 ? 4 : 2), w);
  dequant16<DT>(w, out);
}

}  // namespace cuda
}  // namespace pf
#endif
