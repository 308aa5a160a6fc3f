// The two inner loops every CPU kernel is built from, one implementation per instruction set.
//
// gemv_acc: a small dense product accumulated into y
//   for t < nt, o < n:  y[t*ldy + o] += Σ_{q < nq} g[t*ldg + q] * M[q*ldm + o]
//   M is f32, f16 or bf16 (converted on load); g and y are f32.
//   Used as shrink (M = Aᵀ [din, r], n = r), expand (M = Bᵀ [r, dout], n = dout) and merge.
//   Per output element the sum is always formed the same way (four partial sums over
//   q mod 4, combined as (p0 + p1) + (p2 + p3), then added to y), whatever nt and however
//   callers split the o range on vector-width boundaries: results do not depend on the
//   thread count or on how tokens were grouped.
//
// convert_scale: out[i] = alpha * src[i] for i < n (src in the bank dtype).
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
