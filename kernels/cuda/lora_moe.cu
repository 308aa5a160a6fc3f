// lora_moe on CUDA: the entry point and the decode path (few tokens).
//
//   x [T, din], ids [T, k], w [T, k], y [T, dout] (accumulated into)       (maths: personafuse.h)
//   for t, j with e = ids[t, j] >= 0:
//     g[t, j, :r_e] = w[t, j] * s[e] * (A_e[:r_e, :] · x[t, :])     # shrink + gate, [r_e]
//     y[t, :]      += Σ_j Bᵀ_e[:r_e, :]ᵀ · g[t, j, :r_e]              # expand, [dout]
//
// Decode (T below moe_prefill_min_tokens, f32 banks, ranks above 128), as Punica's BGMV:
//   shrink: one block per (token, slot) pair and group of kQB rank rows; the block's threads
//     stride over din with 16-byte weight loads (Vec16: 8 f16/bf16 or 4 f32), each keeping
//     kQB fused-multiply-add chains; warp butterflies then one pass over the warps reduce
//     them. g ([T, k, rank] f32, a few KB) stays in L2 for the expand.
//   expand: one block per (token, 32 * Vec16 outputs); its 8 warps split the k * rank
//     (slot, rank row) pairs, each lane reading 16 bytes of a Bᵀ row per pair; the warps'
//     partial sums are added in a fixed order and into y.
// From moe_prefill_min_tokens on, a tensor-core path of lora_moe_grouped.cu runs instead (dense
// when the bank has at most moe_dense_max_columns columns, else grouped); up to
// moe_fused_max_tokens (when set), the one-kernel path of lora_moe_fused.cu.
#include <math.h>

#include "lora_moe.cuh"
#include "lora_moe_rows.cuh"

namespace pf {
namespace cuda {
namespace {

constexpr int kShrinkThreads = 256;
constexpr int kShrinkWarps = kShrinkThreads / 32;
constexpr int kQB = 4;  // rank rows per shrink block
constexpr int kExpandWarps = 8;

template <int DT, bool XVEC>
__global__ void __launch_bounds__(kShrinkThreads)
    moe_shrink_kernel(pf_cuda_bank_view bank, const float* __restrict__ x, int64_t T, const int32_t* __restrict__ ids,
                      const float* __restrict__ w, int32_t k, float* __restrict__ g, unsigned long long* fault) {
  constexpr int N = Vec16<DT>::N;
  __shared__ float part[kShrinkWarps][kQB];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int q0 = blockIdx.y * kQB;
  const int64_t pairs = T * k;
  for (int64_t p = blockIdx.x; p < pairs; p += gridDim.x) {
    const int32_t e = ids[p];
    const float wv = w[p];
    if (blockIdx.y == 0 && threadIdx.x == 0) {
      if (e < -1 || e >= bank.experts) record_fault(fault, kFaultIds, p);
      if (!isfinite(wv)) record_fault(fault, kFaultWeights, p);
    }
    if (e < 0 || e >= bank.experts) continue;  // uniform over the block
    const int re = bank.ranks[e];
    if (q0 >= re) continue;
    const int nq = min(kQB, re - q0);
    const float* xr = x + (p / k) * bank.din;
    const int64_t row0 = bank.a_off[e] + (int64_t)q0 * bank.lda;
    float acc[kQB];
#pragma unroll
    for (int qq = 0; qq < kQB; ++qq) acc[qq] = 0.0f;
    dot_a_rows<DT, XVEC>(bank, xr, row0, nq, (int64_t)threadIdx.x * N, (int64_t)kShrinkThreads * N, acc);
#pragma unroll
    for (int qq = 0; qq < kQB; ++qq) {
      const float v = warp_sum(acc[qq]);
      if (lane == 0) part[warp][qq] = v;
    }
    __syncthreads();
    if ((int)threadIdx.x < nq) {
      float h = part[0][threadIdx.x];
      for (int wi = 1; wi < kShrinkWarps; ++wi) h += part[wi][threadIdx.x];
      // a non-finite weight skips the pair (a recorded fault), like an out-of-range id
      g[p * bank.rank + q0 + threadIdx.x] = isfinite(wv) ? (wv * bank.scales[e]) * h : 0.0f;
    }
    __syncthreads();  // part is reused by the next pair
  }
}

template <int DT>
__global__ void __launch_bounds__(kExpandWarps * 32)
    moe_expand_kernel(pf_cuda_bank_view bank, int64_t T, const int32_t* __restrict__ ids, int32_t k,
                      const float* __restrict__ g, float* __restrict__ y) {
  constexpr int N = Vec16<DT>::N;
  constexpr int kOut = 32 * N;  // outputs per block
  __shared__ float part[kExpandWarps][kOut];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t o_base = (int64_t)blockIdx.x * kOut;
  const int64_t o0 = o_base + lane * N;
  const int P = k * bank.rank;
  for (int64_t t = blockIdx.y; t < T; t += gridDim.y) {
    float acc[N];
#pragma unroll
    for (int u = 0; u < N; ++u) acc[u] = 0.0f;
    if (o0 < bank.ldb)
      expand_chunk<DT>(bank, o0, P, warp, kExpandWarps,
                       [&](int p, int32_t* e, int* q, float* gv) {
                         const int j = p / bank.rank;
                         *q = p - j * bank.rank;
                         *e = ids[t * k + j];
                         if (*e < 0 || *e >= bank.experts || *q >= bank.ranks[*e]) return false;
                         *gv = g[(t * k + j) * bank.rank + *q];
                         return true;
                       },
                       acc);
#pragma unroll
    for (int u = 0; u < N; ++u) part[warp][lane * N + u] = acc[u];
    __syncthreads();
    add_warp_parts<kExpandWarps, kOut>(&part[0][0], o_base, bank.dout, y + t * bank.dout);
    __syncthreads();
  }
}

template <int DT>
pf_status decode(const MoeCall& c, float* g) {
  const pf_cuda_bank_view& b = c.bank->view;
  constexpr int N = Vec16<DT>::N;
  const int64_t pairs = c.T * c.k;
  const dim3 sgrid((unsigned)(pairs < kMaxGridX ? pairs : kMaxGridX), (unsigned)((b.rank + kQB - 1) / kQB));
  const bool xvec = b.din % 4 == 0 && reinterpret_cast<uintptr_t>(c.x) % 16 == 0;
  if (xvec)
    PF_LAUNCH((moe_shrink_kernel<DT, true>), sgrid, kShrinkThreads, 0, c.stream)(b, c.x, c.T, c.ids, c.w, c.k, g, c.fault);
  else
    PF_LAUNCH((moe_shrink_kernel<DT, false>), sgrid, kShrinkThreads, 0, c.stream)(b, c.x, c.T, c.ids, c.w, c.k, g, c.fault);
  if (pf_status s = check_launch("lora_moe_shrink")) return s;
  const dim3 egrid((unsigned)((b.dout + 32 * N - 1) / (32 * N)), (unsigned)(c.T < kMaxGridY ? c.T : kMaxGridY));
  PF_LAUNCH(moe_expand_kernel<DT>, egrid, kExpandWarps * 32, 0, c.stream)(b, c.T, c.ids, c.k, g, c.y);
  return check_launch("lora_moe_expand");
}

}  // namespace
}  // namespace cuda
}  // namespace pf

#if !defined(PF_CUDA_EMULATE)  // the entry point needs the CUDA runtime; the emulation test calls the paths
extern "C" pf_status pf_cuda_lora_moe(const pf_cuda_bank* bank, const float* x, int64_t T, const int32_t* ids,
                                      const float* w, int32_t k, float* y, pf_cuda_stream stream) {
  using namespace pf::cuda;
  if (pf_status s = check_bank(bank)) return s;
  if (T < 0) return fail(PF_ERR_ARGUMENT, "Expected a token count >= 0 for x but received %lld", (long long)T);
  if (k < 1 || k > bank->experts)
    return fail(PF_ERR_ARGUMENT, "Expected an integer between 1 and %d for k but received %d", bank->experts, k);
  if (T == 0) return PF_OK;
  if (!x || !ids || !w || !y)
    return fail(PF_ERR_ARGUMENT, "Expected buffers for %s but received null",
                !x ? "x" : !ids ? "ids" : !w ? "weights" : "y");
  const DeviceState* dev = nullptr;
  if (pf_status s = current_device(&dev)) return s;
  if (pf_status s = check_bank_device(*bank, *dev)) return s;
  if (pf_status s = check_array(*dev, x, (size_t)T * bank->din * 4, "x")) return s;
  if (pf_status s = check_array(*dev, ids, (size_t)T * k * 4, "ids")) return s;
  if (pf_status s = check_array(*dev, w, (size_t)T * k * 4, "weights")) return s;
  if (pf_status s = check_array(*dev, y, (size_t)T * bank->dout * 4, "y")) return s;

  const cudaStream_t st = to_cuda(stream);
  Faults faults(*dev, st);
  if (pf_status s = faults.begin()) return s;
  Scratch scratch(*dev, st);
  const MoeCall call{bank, x, T, ids, w, k, y, faults.word(), st};
  pf_status s;
  if (moe_dense_fits(*dev, call)) {
    s = moe_dense(*dev, call, scratch);
  } else if (moe_grouped_fits(*dev, call)) {
    s = moe_grouped(*dev, call, scratch);
  } else if (moe_fused_fits(call)) {
    s = moe_fused(*dev, call);
  } else {
    void* g = nullptr;
    s = scratch.alloc((size_t)T * k * bank->rank * sizeof(float), &g);
    if (!s) {
      float* gf = static_cast<float*>(g);
      s = bank->dtype == PF_F32   ? decode<pf::kF32>(call, gf)
          : bank->dtype == PF_F16 ? decode<pf::kF16>(call, gf)
                                  : decode<pf::kBF16>(call, gf);
    }
  }
  if (s) return s;
  OpContext ctx{"pf_cuda_lora_moe"};
  ctx.ids = ids;
  ctx.weights = w;
  ctx.experts = bank->experts;
  return faults.finish(ctx);
}
#endif
