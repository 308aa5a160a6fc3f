// The inner loops every CPU kernel is built from, one implementation per instruction set
// (gemv_template.inl, moe_template.inl, softmax_template.inl over each level's vector traits).
//
// gemv_acc: a small dense product accumulated into y
//   for t < nt, o < n:  y[t*ldy + o] += Σ_{q < nq} g[t*ldg + q] * M[q*ldm + o]
//   M is f32, f16 or bf16 (converted on load); g and y are f32.
//   Used by merge_experts (M = Bᵀ [r, dout] or the A rows).
//   Per output element the sum is always formed the same way (four partial sums over
//   q mod 4, combined as (p0 + p1) + (p2 + p3), then added to y), whatever nt and however
//   callers split the o range on vector-width boundaries: results do not depend on the
//   thread count or on how tokens were grouped.
//
// convert_scale: out[i] = alpha * src[i] for i < n (src in the bank dtype).
// convert_rows: the same over a strided block of rows (fold's A_cat side, lora_moe's panels).
// softmax_rows / topk_rows: topk_softmax's row maxima and sums, and its k-best selection.
//
// shrink / expand: lora_moe's micro-kernels over tokens given as row pointers (the tokens of one
// expert, wherever they are in the batch); the exact summation order is in moe_template.inl.
//   shrink: h[t][q] = Σ_{i < din} x[t][i] * at[i*re + q]          at [din, re], t < nt, q < re
//   expand: y[t][o] += Σ_{q < re} g[t][q] * bt[q*ldb + o]         bt [re, ldb], o0 <= o < o1
#ifndef PF_CPU_SIMD_OPS_H
#define PF_CPU_SIMD_OPS_H

#include <stdint.h>

#include "personafuse.h"

namespace pf {

struct SimdOps {
  const char* name;
  int width;  // f32 lanes per vector; callers split o ranges on multiples of 16
  void (*gemv_acc)(pf_dtype dt, const void* m, int64_t ldm, int64_t nq, const float* g,
                   int64_t ldg, int nt, float* y, int64_t ldy, int64_t n);
  void (*convert_scale)(pf_dtype dt, const void* src, float alpha, float* out, int64_t n);
  // out[i*ldo + c] = alpha * src[i*lds + c] for i < rows, c < n.
  void (*convert_rows)(pf_dtype dt, const void* src, int64_t lds, float alpha, float* out,
                       int64_t ldo, int64_t rows, int64_t n);
  void (*shrink)(pf_dtype dt, const void* at, int64_t re, int64_t din, const float* const* x,
                 int nt, float* const* h);
  void (*expand)(pf_dtype dt, const void* bt, int64_t ldb, int64_t re, const float* const* g,
                 int nt, float* const* y, int64_t o0, int64_t o1);
  // m[t] = max of row t of l [nt, E], s[t] = Σ exp(l - m[t]); m[t] = NaN for a row with NaN,
  // +Inf or no finite value (softmax_template.inl).
  void (*softmax_rows)(const float* l, int64_t nt, int32_t E, float* m, float* s);
  // ids[t*k + j] = the k largest of row t (larger first, ties to the lower id); rows free of
  // NaN; keys: scratch of E rounded up to 16 int32 (softmax_template.inl).
  void (*topk_rows)(const float* l, int64_t nt, int32_t E, int32_t k, int32_t* ids, int32_t* keys);
};

const SimdOps& simd_scalar();
#if defined(__x86_64__) || defined(_M_X64)
const SimdOps& simd_avx2();
const SimdOps& simd_avx512();
#endif

// The ops of the best level this CPU supports, capped by pf_set_simd.
const SimdOps& simd();

// Element size of a bank dtype in bytes.
inline int64_t dtype_size(pf_dtype dt) { return dt == PF_F32 ? 4 : 2; }

}  // namespace pf
#endif
