// What one CUDA thread computes, written once for host and device (PF_HD) so that the CPU
// test suite (kernels/tests/lane_math_test.cc) checks the very functions the kernels run:
//   dequantise   16 bytes of f32 / f16 / bf16 weights -> 4 or 8 floats
//   dot          a fixed-order chain of fused multiply-adds
//   reduce       the combine steps of the warp butterfly (sum, max, best-of for top-k)
//   select       a lane's best not-yet-taken routing candidate
//   split        an f32 operand as hi + lo halves for the tensor cores
// Conversions go through numeric.h on the host. On the device the f16/bf16 <-> f32
// conversions use the hardware instructions, which are the same IEEE functions (f16 -> f32
// and bf16 -> f32 exact, f32 -> f16/bf16 round to nearest even); only NaN payloads may differ.
// test:gpu checks the device side bit for bit through fold_experts, which copies weights.
#ifndef PF_COMMON_LANE_MATH_H
#define PF_COMMON_LANE_MATH_H

#include <math.h>
#include <stdint.h>

#include "numeric.h"

#if defined(__CUDACC__)
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#endif

namespace pf {

// Dtype codes of personafuse.h (PF_F32, PF_F16, PF_BF16) as template arguments.
enum : int { kF32 = 0, kF16 = 1, kBF16 = 2 };

// Elements in one 16-byte load of weights of dtype DT.
template <int DT>
struct Vec16 {
  static constexpr int N = DT == kF32 ? 4 : 8;
};

// Row pitch in elements: n rounded up so every row starts on a 16-byte boundary.
PF_HD int64_t pitch16(int64_t n, int dtype) {
  const int64_t per = dtype == kF32 ? 4 : 8;
  return (n + per - 1) / per * per;
}

PF_HD float half_to_f32(uint16_t h) {
#if defined(__CUDA_ARCH__)
  return __half2float(__ushort_as_half(h));
#else
  return f16_to_f32(h);
#endif
}

PF_HD uint16_t f32_to_half(float f) {
#if defined(__CUDA_ARCH__)
  return __half_as_ushort(__float2half_rn(f));
#else
  return f32_to_f16(f);
#endif
}

PF_HD uint16_t f32_to_bfloat(float f) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  return __bfloat16_as_ushort(__float2bfloat16_rn(f));
#else
  return f32_to_bf16(f);
#endif
}

// One 16-bit element of dtype DT (kF16 or kBF16) as f32.
template <int DT>
PF_HD float elem16_to_f32(uint16_t h) {
  return DT == kF16 ? half_to_f32(h) : bf16_to_f32(h);
}

template <int DT>
PF_HD uint16_t f32_to_elem16(float f) {
  return DT == kF16 ? f32_to_half(f) : f32_to_bfloat(f);
}

// Dequantise one 16-byte load (four little-endian 32-bit words) into Vec16<DT>::N floats,
// element order as in memory.
template <int DT>
PF_HD void dequant16(const uint32_t w[4], float* out) {
  if (DT == kF32) {
    for (int i = 0; i < 4; ++i) out[i] = bits_to_f32(w[i]);
  } else {
    for (int i = 0; i < 4; ++i) {
      out[2 * i] = elem16_to_f32<DT>((uint16_t)(w[i] & 0xffffu));
      out[2 * i + 1] = elem16_to_f32<DT>((uint16_t)(w[i] >> 16));
    }
  }
}

// One element of a weight array of dtype DT as f32 (scalar path: fold's gathers, merge tiles).
template <int DT>
PF_HD float load_elem(const void* p, int64_t idx) {
  if (DT == kF32) return static_cast<const float*>(p)[idx];
  return elem16_to_f32<DT>(static_cast<const uint16_t*>(p)[idx]);
}

// acc + Σ_{i<N} a[i]·b[i], one fused multiply-add per element, i ascending.
template <int N>
PF_HD float fma_dot(float acc, const float* a, const float* b) {
  for (int i = 0; i < N; ++i) acc = fmaf(a[i], b[i], acc);
  return acc;
}

// Combine steps of the warp butterfly: lane l and lane l ^ offset each apply combine(own,
// partner's); both operations are commutative, so after log2(width) steps every lane of the
// group holds bit-identical results.
PF_HD float combine_sum(float a, float b) { return a + b; }
PF_HD float combine_max(float a, float b) { return a > b ? a : b; }  // inputs are never NaN

// Routing candidates (value, id): keep the better one by topk_before (larger value, then lower id).
PF_HD void combine_best(float* v, int32_t* id, float ov, int32_t oid) {
  if (topk_before(ov, oid, *v, *id)) {
    *v = ov;
    *id = oid;
  }
}

// The "no candidate" id: loses to every real candidate, -Infinity ones included.
constexpr int32_t kNoId = INT32_MAX;

// A lane of the top-k kernel holds the logits of experts id0, id0 + stride, ... (n of them,
// n <= VMAX <= 32) in vals; bit v of `taken` marks vals[v] as already chosen. Writes the best
// candidate not taken, or (-Infinity, kNoId) when none is left.
template <int VMAX>
PF_HD void lane_best(const float* vals, uint32_t taken, int n, int32_t id0, int32_t stride,
                     float* best_v, int32_t* best_id) {
  float bv = -INFINITY;
  int32_t bi = kNoId;
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int v = 0; v < VMAX; ++v)
    if (v < n && !((taken >> v) & 1u)) combine_best(&bv, &bi, vals[v], id0 + v * stride);
  *best_v = bv;
  *best_id = bi;
}

// top-k rows per warp: a row is held by G consecutive lanes, G the smallest power of two
// that leaves each lane at most 8 of the E logits (32 lanes, up to 32 values, past E = 256).
PF_HD int topk_group_lanes(int E) {
  int G = 1;
  while (G < 32 && (E + G - 1) / G > 8) G <<= 1;
  return G;
}

// x = hi + lo with hi, lo in dtype DT (kF16 or kBF16): hi = round(x), lo = round(x - hi).
// x - hi is exact in f32, so hi + lo carries 2x the bits of one part (about 22 for f16,
// 16 for bf16) where lo does not underflow.
template <int DT>
PF_HD void split_hi_lo(float x, uint16_t* hi, uint16_t* lo) {
  *hi = f32_to_elem16<DT>(x);
  *lo = f32_to_elem16<DT>(x - elem16_to_f32<DT>(*hi));
}

// The exponent s that brings a row whose largest magnitude is maxabs into [2^14, 2^15) before
// split_hi_lo: f16 cannot overflow and lo stays clear of the subnormals. Scaling by 2^s and
// back by 2^-s is exact (short of f32 overflow or underflow). 0 for a zero or non-finite row.
PF_HD int split_scale_exp(float maxabs) {
  if (!(maxabs > 0.0f) || !isfinite(maxabs)) return 0;
  int ex = 0;
  frexpf(maxabs, &ex);  // maxabs = f * 2^ex, f in [0.5, 1)
  const int s = 15 - ex;
  return s < -250 ? -250 : s > 250 ? 250 : s;
}

}  // namespace pf
#endif
