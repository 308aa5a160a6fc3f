// The pieces of lora_moe's two decode paths (lora_moe.cu: two kernels; lora_moe_fused.cu: one)
// that work on one token's rows. The expand adds in the same order on both paths; the shrink
// differs only in how din is shared out (256 threads of a block, or the 32 lanes of a warp):
//   dot_a_rows       shrink: nq A rows · one x row, over one thread's share of din
//   expand_chunk     expand: Σ over a warp's (slot, rank row) pairs of g · Bᵀ row, one chunk
//   add_warp_parts   the warps' partial chunks, added in warp order, into a y row
#ifndef PF_CUDA_LORA_MOE_ROWS_CUH
#define PF_CUDA_LORA_MOE_ROWS_CUH

#include "bank.cuh"
#include "warp.cuh"

namespace pf {
namespace cuda {

// acc[qq] += Σ_i A[row0 + qq·lda + i] · xr[i] for qq < nq, over i = first, first + step, ... < din
// (Vec16<DT>::N elements from each: one 16-byte weight load per row). x is loaded once for the
// QB rows; the loop is unrolled so several iterations' loads are in flight at once.
template <int DT, bool XVEC, int QB>
__device__ __forceinline__ void dot_a_rows(const pf_cuda_bank_view& bank, const float* __restrict__ xr, int64_t row0,
                                           int nq, int64_t first, int64_t step, float (&acc)[QB]) {
  constexpr int N = Vec16<DT>::N;
#pragma unroll 4
  for (int64_t i0 = first; i0 < bank.din; i0 += step) {
    float xv[N];
    load_f32_row<N, XVEC>(xr, i0, bank.din, xv);
#pragma unroll
    for (int qq = 0; qq < QB; ++qq)
      if (qq < nq) {
        float av[N];
        load_weights16<DT>(bank.a, row0 + qq * bank.lda + i0, av);
        acc[qq] = fma_dot<N>(acc[qq], av, xv);
      }
  }
}

// acc[u] (N = Vec16<DT>::N outputs from o0, o0 < ldb) += Σ g · Bᵀ_e[q, o0 + u] over the pairs
// p = first, first + step, ... < P; pair(p, &e, &q, &g) names each pair's expert, rank row and
// gate, or returns false to skip it.
template <int DT, class Pair>
__device__ __forceinline__ void expand_chunk(const pf_cuda_bank_view& bank, int64_t o0, int P, int first, int step,
                                             Pair pair, float* acc) {
  constexpr int N = Vec16<DT>::N;
  for (int p = first; p < P; p += step) {
    int32_t e;
    int q;
    float gv;
    if (!pair(p, &e, &q, &gv)) continue;
    float bv[N];
    load_weights16<DT>(bank.bt, bank.b_off[e] + (int64_t)q * bank.ldb + o0, bv);
#pragma unroll
    for (int u = 0; u < N; ++u) acc[u] = fmaf(gv, bv[u], acc[u]);
  }
}

// yrow[o_base + i] += Σ_w part[w·CHUNK + i] (w = 0 .. WARPS-1 in order) for i < CHUNK and
// o_base + i < dout; called by every thread of the block after a barrier.
template <int WARPS, int CHUNK>
__device__ __forceinline__ void add_warp_parts(const float* part, int64_t o_base, int64_t dout, float* __restrict__ yrow) {
  for (int idx = threadIdx.x; idx < CHUNK; idx += WARPS * 32) {
    const int64_t o = o_base + idx;
    if (o < dout) {
      float s = part[idx];
      for (int wi = 1; wi < WARPS; ++wi) s += part[wi * CHUNK + idx];
      yrow[o] += s;
    }
  }
}

}  // namespace cuda
}  // namespace pf
#endif
