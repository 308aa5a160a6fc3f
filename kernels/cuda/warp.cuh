// Device-side building blocks: the warp butterfly over the PF_HD combine steps of
// lane_math.h, 16-byte loads of weights and vector loads of f32 activation rows. lane_math_test.cc emulates the same butterfly
// over 32 host "lanes" (partner = lane ^ offset, offsets width/2 .. 1).
#ifndef PF_CUDA_WARP_CUH
#define PF_CUDA_WARP_CUH

#include <stdint.h>

#include "../common/lane_math.h"

namespace pf {
namespace cuda {

constexpr unsigned kFullMask = 0xffffffffu;

// The block's dynamic shared memory as `type name[]`, 128-byte aligned (WMMA tiles need 32);
// the CPU emulation defines its own.
#ifndef PF_EXTERN_SHARED
#define PF_EXTERN_SHARED(type, name) extern __shared__ __align__(128) type name[]
#endif

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

// N activations xr[i0 .. i0+N) of an f32 row of n, zeros past n (i0 a multiple of N, N of 4).
// VEC: the row starts on a 16-byte boundary and n % 4 == 0, so float4 loads never straddle n.
template <int N, bool VEC>
__device__ __forceinline__ void load_f32_row(const float* __restrict__ xr, int64_t i0, int64_t n, float* xv) {
  if (VEC) {
#pragma unroll
    for (int s = 0; s < N / 4; ++s) {
      float4 f = make_float4(0.f, 0.f, 0.f, 0.f);
      if (i0 + 4 * s < n) f = __ldg(reinterpret_cast<const float4*>(xr + i0 + 4 * s));
      xv[4 * s] = f.x;
      xv[4 * s + 1] = f.y;
      xv[4 * s + 2] = f.z;
      xv[4 * s + 3] = f.w;
    }
  } else {
#pragma unroll
    for (int u = 0; u < N; ++u) xv[u] = i0 + u < n ? __ldg(xr + i0 + u) : 0.0f;
  }
}

}  // namespace cuda
}  // namespace pf
#endif
