// merge_experts on CUDA: W' = W + Σ_j w_j s_e (B_e A_e)ᵀ, in place.              (personafuse.h)
//
//   in_out  W [din, dout]: W[i, o] += Σ_j c_j Σ_q A_e[q, i] · Bᵀ_e[q, o]
//   out_in  W [dout, din]: W[o, i] += Σ_j c_j Σ_q Bᵀ_e[q, o] · A_e[q, i]        c_j = w_j s_e
// Both are W[r, :] += Σ_(j,q) U[q, r] V[q, :] with U, V rank-outer rows of the bank (A and
// Bᵀ, or Bᵀ and A). A block owns a 32 x 128 tile of W; per step it stages 16 rank rows of
// c_j·U (32 values each) and V (128 values each, 16-byte loads) in shared memory, and each
// thread keeps a 4 x 4 block of sums. W is read and written once (float4 when aligned):
// bandwidth-bound for the usual n·r, compute-bound only for very large n·r.
#include <math.h>

#include "bank.cuh"
#include "warp.cuh"

namespace pf {
namespace cuda {
namespace {

constexpr int kMR = 32, kMC = 128, kMP = 16;  // tile rows, tile columns, rank rows per step
constexpr int kThreads = 256;                 // 32 column groups of 4 x 8 row groups of 4

template <int DT, bool VEC>
__global__ void __launch_bounds__(kThreads)
    merge_kernel(pf_cuda_bank_view bank, const int32_t* __restrict__ ids, const float* __restrict__ w, int32_t n,
                 float* W, int in_out, unsigned long long* fault) {
  constexpr int N = Vec16<DT>::N;
  __shared__ __align__(16) float us[kMP][kMR];
  __shared__ __align__(16) float vs[kMP][kMC];
  const int64_t rows = in_out ? bank.din : bank.dout, cols = in_out ? bank.dout : bank.din;
  const void* U = in_out ? bank.a : bank.bt;
  const void* V = in_out ? bank.bt : bank.a;
  const int64_t ldu = in_out ? bank.lda : bank.ldb, ldv = in_out ? bank.ldb : bank.lda;
  const int64_t* uoff = in_out ? bank.a_off : bank.b_off;
  const int64_t* voff = in_out ? bank.b_off : bank.a_off;
  const int tx = threadIdx.x & 31, ty = threadIdx.x >> 5;
  const int64_t c0 = (int64_t)blockIdx.x * kMC;
  if (blockIdx.x == 0 && blockIdx.y == 0)
    for (int j = threadIdx.x; j < n; j += kThreads) {
      if (ids[j] < -1 || ids[j] >= bank.experts) record_fault(fault, kFaultIds, j);
      if (!isfinite(w[j])) record_fault(fault, kFaultWeights, j);
    }
  for (int64_t r0 = (int64_t)blockIdx.y * kMR; r0 < rows; r0 += (int64_t)gridDim.y * kMR) {
    float acc[4][4];
#pragma unroll
    for (int a = 0; a < 4; ++a)
#pragma unroll
      for (int b = 0; b < 4; ++b) acc[a][b] = 0.0f;
    for (int j = 0; j < n; ++j) {
      const int32_t e = ids[j];
      const float wj = w[j];
      if (e < 0 || e >= bank.experts || !isfinite(wj)) continue;  // uniform; bad entries are faults
      const int re = bank.ranks[e];
      const float c = wj * bank.scales[e];
      for (int q0 = 0; q0 < re; q0 += kMP) {
        __syncthreads();
        for (int idx = threadIdx.x; idx < kMP * kMR; idx += kThreads) {
          const int qq = idx / kMR, rr = idx % kMR;
          const int64_t r = r0 + rr;
          us[qq][rr] = q0 + qq < re && r < rows ? c * load_elem<DT>(U, uoff[e] + (int64_t)(q0 + qq) * ldu + r) : 0.0f;
        }
        for (int idx = threadIdx.x; idx < kMP * (kMC / N); idx += kThreads) {
          const int qq = idx / (kMC / N), v = idx % (kMC / N);
          const int64_t col = c0 + v * N;
          float vals[N];
#pragma unroll
          for (int u = 0; u < N; ++u) vals[u] = 0.0f;
          if (q0 + qq < re && col < ldv) load_weights16<DT>(V, voff[e] + (int64_t)(q0 + qq) * ldv + col, vals);
#pragma unroll
          for (int u = 0; u < N; ++u) vs[qq][v * N + u] = vals[u];
        }
        __syncthreads();
#pragma unroll
        for (int qq = 0; qq < kMP; ++qq) {
          const float4 uv = *reinterpret_cast<const float4*>(&us[qq][ty * 4]);
          const float4 vv = *reinterpret_cast<const float4*>(&vs[qq][tx * 4]);
          const float ua[4] = {uv.x, uv.y, uv.z, uv.w}, va[4] = {vv.x, vv.y, vv.z, vv.w};
#pragma unroll
          for (int a = 0; a < 4; ++a)
#pragma unroll
            for (int b = 0; b < 4; ++b) acc[a][b] = fmaf(ua[a], va[b], acc[a][b]);
        }
      }
    }
    const int64_t col = c0 + tx * 4;
#pragma unroll
    for (int a = 0; a < 4; ++a) {
      const int64_t r = r0 + ty * 4 + a;
      if (r >= rows) continue;
      float* p = W + r * cols + col;
      if (VEC) {
        if (col < cols) {
          float4 f = *reinterpret_cast<float4*>(p);
          f.x += acc[a][0];
          f.y += acc[a][1];
          f.z += acc[a][2];
          f.w += acc[a][3];
          *reinterpret_cast<float4*>(p) = f;
        }
      } else {
#pragma unroll
        for (int b = 0; b < 4; ++b)
          if (col + b < cols) p[b] += acc[a][b];
      }
    }
  }
}

template <int DT>
pf_status merge(const pf_cuda_bank& bank, const int32_t* ids, const float* w, int32_t n, float* W, bool in_out,
                unsigned long long* fault, cudaStream_t st) {
  const int64_t rows = in_out ? bank.din : bank.dout, cols = in_out ? bank.dout : bank.din;
  const int64_t gy = (rows + kMR - 1) / kMR;
  const dim3 grid((unsigned)((cols + kMC - 1) / kMC), (unsigned)(gy < kMaxGridY ? gy : kMaxGridY));
  if (cols % 4 == 0 && reinterpret_cast<uintptr_t>(W) % 16 == 0)
    PF_LAUNCH((merge_kernel<DT, true>), grid, kThreads, 0, st)(bank.view, ids, w, n, W, in_out, fault);
  else
    PF_LAUNCH((merge_kernel<DT, false>), grid, kThreads, 0, st)(bank.view, ids, w, n, W, in_out, fault);
  return check_launch("merge_experts");
}

// The launch code behind pf_cuda_merge_experts, arguments checked: the kernel for the bank's dtype.
pf_status merge_experts(const pf_cuda_bank& bank, const int32_t* ids, const float* w, int32_t n, float* W, bool in_out,
                        unsigned long long* fault, cudaStream_t st) {
  switch (bank.dtype) {
    case PF_F32: return merge<pf::kF32>(bank, ids, w, n, W, in_out, fault, st);
    case PF_F16: return merge<pf::kF16>(bank, ids, w, n, W, in_out, fault, st);
    default: return merge<pf::kBF16>(bank, ids, w, n, W, in_out, fault, st);
  }
}

}  // namespace
}  // namespace cuda
}  // namespace pf

#if !defined(PF_CUDA_EMULATE)  // the entry point needs the CUDA runtime; the emulation test calls merge_experts
extern "C" pf_status pf_cuda_merge_experts(const pf_cuda_bank* bank, const int32_t* ids, const float* w, int32_t n,
                                           float* W, pf_layout layout, pf_cuda_stream stream) {
  using namespace pf::cuda;
  if (pf_status s = check_bank(bank)) return s;
  if (n < 0) return fail(PF_ERR_ARGUMENT, "Expected a count >= 0 for ids but received %d", n);
  if (layout != PF_LAYOUT_IN_OUT && layout != PF_LAYOUT_OUT_IN)
    return fail(PF_ERR_ARGUMENT, "Expected one of in_out, out_in for layout but received %d", (int)layout);
  if (n == 0) return PF_OK;
  if (!ids || !w || !W)
    return fail(PF_ERR_ARGUMENT, "Expected buffers for %s but received null", !ids ? "ids" : !w ? "weights" : "w");
  const DeviceState* dev = nullptr;
  if (pf_status s = current_device(&dev)) return s;
  if (pf_status s = check_bank_device(*bank, *dev)) return s;
  if (pf_status s = check_array(*dev, ids, (size_t)n * 4, "ids")) return s;
  if (pf_status s = check_array(*dev, w, (size_t)n * 4, "weights")) return s;
  if (pf_status s = check_array(*dev, W, (size_t)bank->din * bank->dout * 4, "w")) return s;

  const cudaStream_t st = to_cuda(stream);
  Faults faults(*dev, st);
  if (pf_status s = faults.begin()) return s;
  if (pf_status s = merge_experts(*bank, ids, w, n, W, layout == PF_LAYOUT_IN_OUT, faults.word(), st)) return s;
  OpContext ctx{"pf_cuda_merge_experts"};
  ctx.ids = ids;
  ctx.weights = w;
  ctx.experts = bank->experts;
  return faults.finish(ctx);
}
#endif
