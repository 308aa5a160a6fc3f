// lora_moe on CUDA, the one-kernel decode path for a few tokens (T up to moe_fused_max_tokens).
//
// Why: at T <= 64 the two-kernel decode path (lora_moe.cu) spends its time on fixed costs,
// not bytes: a scratch allocation for g, two launches, and in the expand a chain of dependent
// loads (ids -> ranks -> g -> Bᵀ) per warp (14-24 us measured on an H200 against a floor of
// about 0.2 us of DRAM traffic; bench/results/journal-cuda.md). Here one launch does both halves:
//
//   grid (blocks_per_token, T); block (c, t) owns token t and output chunks
//   [c·cpb, (c+1)·cpb) of 32·Vec16 outputs each.
//   1. slots:  for j < k: e_j = ids[t, j] (-1 when out of range or w not finite), r_j = r_e
//   2. shrink: g[j, q] = w[t, j] · s[e_j] · (A_e_j[q, :] · x[t, :])   for q < r_j   -> shared
//              warps take kQB rank rows of one slot at a time; lanes stride din with 16-byte
//              weight loads, one fused multiply-add chain per row, then warp_sum.
//   3. expand: y[t, o] += Σ_j Σ_{q < r_j} Bᵀ_e_j[q, o] · g[j, q]        for o in its chunks
//              as moe_expand_kernel: warps split the (j, q) pairs, lanes own Vec16 outputs,
//              the warps' partials are added in a fixed order.
// Every block of a token recomputes the token's g (k·r·din weights, 256 KB at d 4096, k 2,
// r 16, f16, mostly from L2): that is what the saved launch costs, and why the path stops at
// some T (blocks_per_token shrinks as T grows, see plan_fused).
#include <math.h>

#include "lora_moe.cuh"
#include "lora_moe_rows.cuh"

namespace pf {
namespace cuda {
namespace {

constexpr int kFusedWarps = 8;
constexpr int kFusedThreads = kFusedWarps * 32;
constexpr int kFusedQB = 4;  // rank rows per warp pass of the shrink: x is loaded once for them
constexpr size_t kFusedSmemMax = 48 * 1024;  // no opt-in needed below this on any architecture

template <int DT>
__host__ __device__ constexpr int fused_chunk() {
  return 32 * Vec16<DT>::N;  // outputs per chunk: one 16-byte load per lane
}

// Shared memory: part [kFusedWarps][chunk] f32 | g [k · rank] f32 | e [k] i32 | r [k] i32.
size_t fused_smem_bytes(int chunk, int32_t k, int32_t rank) {
  return ((size_t)kFusedWarps * chunk + (size_t)k * rank) * 4 + (size_t)k * 8;
}

template <int DT, bool XVEC>
__global__ void __launch_bounds__(kFusedThreads)
    moe_fused_kernel(pf_cuda_bank_view bank, const float* __restrict__ x, int64_t T, const int32_t* __restrict__ ids,
                     const float* __restrict__ w, int32_t k, int32_t chunks_per_block, float* __restrict__ y,
                     unsigned long long* fault) {
  constexpr int N = Vec16<DT>::N;
  constexpr int kChunk = fused_chunk<DT>();
  PF_EXTERN_SHARED(float, smem);
  float* part = smem;                                     // [kFusedWarps][kChunk]
  float* gs = part + kFusedWarps * kChunk;                // [k][rank]
  int32_t* se = reinterpret_cast<int32_t*>(gs + (size_t)k * bank.rank);  // [k] expert or -1
  int32_t* sr = se + k;                                   // [k] its rank (0: skip the slot)
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t nchunks = ((int64_t)bank.dout + kChunk - 1) / kChunk;
  const int64_t c0 = (int64_t)blockIdx.x * chunks_per_block;
  const int64_t c1 = c0 + chunks_per_block < nchunks ? c0 + chunks_per_block : nchunks;
  const int qgroups = (bank.rank + kFusedQB - 1) / kFusedQB;

  for (int64_t t = blockIdx.y; t < T; t += gridDim.y) {
    // 1. slots; the first block of each token records its faults (once per pair)
    for (int j = threadIdx.x; j < k; j += kFusedThreads) {
      const int64_t p = t * k + j;
      const int32_t e = ids[p];
      const float wv = w[p];
      if (blockIdx.x == 0) {
        if (e < -1 || e >= bank.experts) record_fault(fault, kFaultIds, p);
        if (!isfinite(wv)) record_fault(fault, kFaultWeights, p);
      }
      // a non-finite weight skips the pair (a recorded fault), like an out-of-range id
      const bool use = e >= 0 && e < bank.experts && isfinite(wv);
      se[j] = use ? e : -1;
      sr[j] = use ? bank.ranks[e] : 0;
    }
    __syncthreads();

    // 2. shrink into gs: warp-sized passes over (slot, group of kFusedQB rank rows)
    const float* xr = x + t * bank.din;
    for (int pass = warp; pass < k * qgroups; pass += kFusedWarps) {
      const int j = pass / qgroups, q0 = (pass - j * qgroups) * kFusedQB;
      const int re = sr[j];
      if (q0 >= re) continue;  // uniform over the warp
      const int nq = min(kFusedQB, re - q0);
      const int32_t e = se[j];
      const int64_t row0 = bank.a_off[e] + (int64_t)q0 * bank.lda;
      float acc[kFusedQB];
#pragma unroll
      for (int qq = 0; qq < kFusedQB; ++qq) acc[qq] = 0.0f;
      dot_a_rows<DT, XVEC>(bank, xr, row0, nq, (int64_t)lane * N, 32 * N, acc);
      const float gate = w[t * k + j] * bank.scales[e];
#pragma unroll
      for (int qq = 0; qq < kFusedQB; ++qq) {
        const float h = warp_sum(acc[qq]);
        if (lane == 0 && qq < nq) gs[j * bank.rank + q0 + qq] = gate * h;
      }
    }
    __syncthreads();

    // 3. expand this block's chunks from gs
    const int P = k * bank.rank;
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t o_base = c * kChunk, o0 = o_base + lane * N;
      float acc[N];
#pragma unroll
      for (int u = 0; u < N; ++u) acc[u] = 0.0f;
      if (o0 < bank.ldb)
        expand_chunk<DT>(bank, o0, P, warp, kFusedWarps,
                         [&](int p, int32_t* e, int* q, float* gv) {
                           const int j = p / bank.rank;
                           *q = p - j * bank.rank;
                           if (*q >= sr[j]) return false;
                           *e = se[j];
                           *gv = gs[p];
                           return true;
                         },
                         acc);
#pragma unroll
      for (int u = 0; u < N; ++u) part[warp * kChunk + lane * N + u] = acc[u];
      __syncthreads();
      add_warp_parts<kFusedWarps, kChunk>(part, o_base, bank.dout, y + t * bank.dout);
      __syncthreads();  // part is reused by the next chunk; gs, se, sr by the next token
    }
  }
}

// Blocks per token: about one block per multiprocessor over the whole grid, so a single token
// is spread over up to nchunks blocks (each recomputing the cheap shrink) and many tokens get
// one block each (each doing all the expand).
struct FusedPlan {
  int64_t blocks_per_token, chunks_per_block;
};
FusedPlan plan_fused(int64_t nchunks, int64_t T, int sms) {
  int64_t bpt = ((int64_t)sms + T - 1) / T;
  bpt = bpt < 1 ? 1 : bpt > nchunks ? nchunks : bpt;
  const int64_t cpb = (nchunks + bpt - 1) / bpt;
  return {(nchunks + cpb - 1) / cpb, cpb};
}

template <int DT>
pf_status launch_fused(const DeviceState& dev, const MoeCall& c) {
  const pf_cuda_bank_view& b = c.bank->view;
  constexpr int kChunk = fused_chunk<DT>();
  const int64_t nchunks = ((int64_t)b.dout + kChunk - 1) / kChunk;
  const FusedPlan plan = plan_fused(nchunks, c.T, dev.sms);
  const dim3 grid((unsigned)plan.blocks_per_token, (unsigned)(c.T < kMaxGridY ? c.T : kMaxGridY));
  const size_t smem = fused_smem_bytes(kChunk, c.k, b.rank);
  const bool xvec = b.din % 4 == 0 && reinterpret_cast<uintptr_t>(c.x) % 16 == 0;
  if (xvec)
    PF_LAUNCH((moe_fused_kernel<DT, true>), grid, kFusedThreads, smem, c.stream)(
        b, c.x, c.T, c.ids, c.w, c.k, (int32_t)plan.chunks_per_block, c.y, c.fault);
  else
    PF_LAUNCH((moe_fused_kernel<DT, false>), grid, kFusedThreads, smem, c.stream)(
        b, c.x, c.T, c.ids, c.w, c.k, (int32_t)plan.chunks_per_block, c.y, c.fault);
  return check_launch("lora_moe_fused");
}

}  // namespace

bool moe_fused_fits(const MoeCall& c) {
  const pf_cuda_bank& b = *c.bank;
  const int chunk = b.dtype == PF_F32 ? fused_chunk<kF32>() : fused_chunk<kF16>();
  return c.T <= opt_fused_max_tokens() && c.T * c.k < (int64_t)INT32_MAX &&
         fused_smem_bytes(chunk, c.k, b.rank) <= kFusedSmemMax;
}

pf_status moe_fused(const DeviceState& dev, const MoeCall& c) {
  switch (c.bank->dtype) {
    case PF_F32: return launch_fused<kF32>(dev, c);
    case PF_F16: return launch_fused<kF16>(dev, c);
    default: return launch_fused<kBF16>(dev, c);
  }
}

}  // namespace cuda
}  // namespace pf
