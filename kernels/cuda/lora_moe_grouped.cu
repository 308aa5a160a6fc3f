// lora_moe on CUDA, the grouped path (prefill: many tokens, f16/bf16 banks, rank <= 128).
//
// As vLLM's LoRA metadata and S-LoRA's SGMV: the (token, slot) pairs are grouped by expert,
// separately per slot j, so tokens that share an expert share its weight tiles:
//   count:   counts[j, e] = #{t : ids[t, j] = e}   (also checks ids and weights: faults)
//   plan:    seg_start[j, e] (where each group's token list starts), tile_start[j, e]
//            (first BM-token tile of each group; entry E = the slot's tile count)
//   scatter: rows[seg_start[j, e] + n] = the n-th token of group (j, e)
//   then for each slot j (in order, so each y row is updated by one block per launch and the
//   k experts add in j order, as on the CPU), one launch of the fused kernel, one block per
//   tile of BM tokens of one expert:
//     shrink  H[BM, rp] = X[BM, din] · A_eᵀ          tensor cores, K = din in BK chunks
//     gate    G = (w[t, j] · s[e]) ⊙ H              in shared memory: never leaves the chip
//     expand  Y[BM, dout] += G · Bᵀ_e               tensor cores, dout in BN chunks
// rp = rank rounded up to 16; each expert uses only ceil(r_e / 16) rank tiles. The f32 side
// of each product (X, then G) is split as hi + lo in the bank's 16-bit type (split_hi_lo),
// two MMAs per step, so results keep about f32 accuracy against exact f16/bf16 weights (G
// rows are scaled by a power of two first; X is not: for f16 banks |x| must stay below 65504,
// and below 2^-3 its split is exact to 2^-25 absolute rather than 2^-21 relative).
// Rows of a tile past its group's end are zero and never written. The grid of each launch is
// the bound ceil(T / BM) + min(E, T) on the tile count; blocks past the real count exit.
// Within a group the token order follows atomics, but every row's arithmetic is independent
// of where it sits in a tile, so results are deterministic.
#include <math.h>
#include <mma.h>

#include "lora_moe.cuh"
#include "warp.cuh"

namespace pf {
namespace cuda {
namespace {

using namespace nvcuda;

constexpr int BM = 64;  // tokens per tile: 4 warps x 16 rows
constexpr int BK = 64;  // din chunk of the shrink
constexpr int BN = 64;  // dout chunk of the expand
constexpr int kWarps = BM / 16;
constexpr int kThreads = kWarps * 32;
constexpr int LDX = BK + 8;   // 16-bit elements; row pitches keep WMMA pointers 32-byte aligned
constexpr int LDBT = BN + 8;  // 16-bit elements
constexpr int LDO = BN + 4;   // f32
constexpr int kMaxRank = 128;
constexpr int kMetaThreads = 256;

template <int DT>
struct Mma16;
template <>
struct Mma16<kF16> {
  typedef __half T;
};
template <>
struct Mma16<kBF16> {
  typedef __nv_bfloat16 T;
};

__host__ __device__ inline size_t up128(size_t n) { return (n + 127) / 128 * 128; }

// Shared memory of one block, in bytes, for rank tiles rp (a multiple of 16).
struct Smem {
  int ldh, ldg;          // pitches of H (f32) and G (16-bit)
  size_t xh, xl, as;     // shrink: X chunk hi / lo [BM, LDX], A chunk [rp, LDX]
  size_t hs;             // H [BM, ldh] f32, after the shrink (aliases the shrink buffers)
  size_t bts, os;        // expand: Bᵀ chunk [rp, LDBT], output tile [BM, LDO] f32 (alias too)
  size_t gh, gl;         // G hi / lo [BM, ldg]
  size_t rows, gate, gexp;  // token, gate and G scale exponent of each tile row
  size_t total;
};

__host__ __device__ inline Smem smem_layout(int rp) {
  Smem L;
  L.ldh = rp + 4;
  L.ldg = rp + 8;
  const size_t x_bytes = up128((size_t)BM * LDX * 2), a_bytes = up128((size_t)rp * LDX * 2);
  const size_t h_bytes = up128((size_t)BM * L.ldh * 4);
  const size_t bt_bytes = up128((size_t)rp * LDBT * 2), o_bytes = up128((size_t)BM * LDO * 4);
  const size_t g_bytes = up128((size_t)BM * L.ldg * 2);
  size_t shared = 2 * x_bytes + a_bytes;
  if (h_bytes > shared) shared = h_bytes;
  if (bt_bytes + o_bytes > shared) shared = bt_bytes + o_bytes;
  L.xh = 0;
  L.xl = x_bytes;
  L.as = 2 * x_bytes;
  L.hs = 0;
  L.bts = 0;
  L.os = bt_bytes;
  L.gh = shared;
  L.gl = shared + g_bytes;
  L.rows = shared + 2 * g_bytes;
  L.gate = L.rows + up128(BM * 4);
  L.gexp = L.gate + up128(BM * 4);
  L.total = L.gexp + up128(BM * 4);
  return L;
}

// ---- metadata --------------------------------------------------------------------------------

__global__ void moe_count_kernel(const int32_t* __restrict__ ids, const float* __restrict__ w, int64_t pairs,
                                 int32_t k, int32_t E, const int32_t* __restrict__ ranks, int32_t* counts,
                                 unsigned long long* fault) {
  for (int64_t p = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; p < pairs; p += (int64_t)gridDim.x * blockDim.x) {
    const int32_t e = ids[p];
    const bool w_ok = isfinite(w[p]);
    if (e < -1 || e >= E) record_fault(fault, kFaultIds, p);
    if (!w_ok) record_fault(fault, kFaultWeights, p);
    if (e >= 0 && e < E && w_ok && ranks[e] > 0) atomicAdd(&counts[(p % k) * E + e], 1);
  }
}

// Inclusive scan of (a, b) over the block; *total receives the block's sums.
__device__ int2 block_scan2(int a, int b, int2* total) {
  __shared__ int2 wsum[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  for (int off = 1; off < 32; off <<= 1) {
    const int ua = __shfl_up_sync(kFullMask, a, off), ub = __shfl_up_sync(kFullMask, b, off);
    if (lane >= off) {
      a += ua;
      b += ub;
    }
  }
  if (lane == 31) wsum[warp] = make_int2(a, b);
  __syncthreads();
  if (warp == 0) {
    int2 v = lane < nw ? wsum[lane] : make_int2(0, 0);
    for (int off = 1; off < 32; off <<= 1) {
      const int ua = __shfl_up_sync(kFullMask, v.x, off), ub = __shfl_up_sync(kFullMask, v.y, off);
      if (lane >= off) {
        v.x += ua;
        v.y += ub;
      }
    }
    if (lane < nw) wsum[lane] = v;
  }
  __syncthreads();
  if (warp > 0) {
    a += wsum[warp - 1].x;
    b += wsum[warp - 1].y;
  }
  *total = wsum[nw - 1];
  __syncthreads();  // wsum is reused by the next call
  return make_int2(a, b);
}

// One block: seg_start over all (j, e); tile_start per slot j, [k, E + 1].
__global__ void __launch_bounds__(kMetaThreads)
    moe_plan_kernel(const int32_t* __restrict__ counts, int32_t k, int32_t E, int32_t* seg_start, int32_t* tile_start) {
  int seg_base = 0;
  for (int j = 0; j < k; ++j) {
    int tile_base = 0;
    for (int e0 = 0; e0 < E; e0 += blockDim.x) {
      const int e = e0 + threadIdx.x;
      const int c = e < E ? counts[j * E + e] : 0;
      const int tiles = (c + BM - 1) / BM;
      int2 total;
      const int2 incl = block_scan2(c, tiles, &total);
      if (e < E) {
        seg_start[j * E + e] = seg_base + incl.x - c;
        tile_start[j * (E + 1) + e] = tile_base + incl.y - tiles;
      }
      seg_base += total.x;
      tile_base += total.y;
    }
    if (threadIdx.x == 0) tile_start[j * (E + 1) + E] = tile_base;
  }
}

__global__ void moe_scatter_kernel(const int32_t* __restrict__ ids, const float* __restrict__ w, int64_t pairs,
                                   int32_t k, int32_t E, const int32_t* __restrict__ ranks,
                                   const int32_t* __restrict__ seg_start, int32_t* cursor, int32_t* rows) {
  for (int64_t p = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; p < pairs; p += (int64_t)gridDim.x * blockDim.x) {
    const int32_t e = ids[p];
    if (e < 0 || e >= E || !isfinite(w[p]) || ranks[e] == 0) continue;
    const int64_t g = (p % k) * E + e;
    rows[seg_start[g] + atomicAdd(&cursor[g], 1)] = (int32_t)(p / k);
  }
}

// ---- the fused tile kernel -----------------------------------------------------------------

// NT: rank tiles of 16 the accumulators hold (rp <= 16 * NT); a capacity, rp is run-time.
template <int DT, int NT>
__global__ void __launch_bounds__(kThreads)
    moe_grouped_kernel(pf_cuda_bank_view bank, const float* __restrict__ x, const float* __restrict__ w, int32_t k,
                       int32_t j, const int32_t* __restrict__ rows, const int32_t* __restrict__ counts,
                       const int32_t* __restrict__ seg_start, const int32_t* __restrict__ tile_start,
                       float* __restrict__ y, int rp) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  typedef typename Mma16<DT>::T E16;
  extern __shared__ __align__(128) unsigned char smem[];
  const Smem L = smem_layout(rp);
  uint16_t* xh = reinterpret_cast<uint16_t*>(smem + L.xh);
  uint16_t* xl = reinterpret_cast<uint16_t*>(smem + L.xl);
  uint16_t* as = reinterpret_cast<uint16_t*>(smem + L.as);
  float* hs = reinterpret_cast<float*>(smem + L.hs);
  uint16_t* bts = reinterpret_cast<uint16_t*>(smem + L.bts);
  float* os = reinterpret_cast<float*>(smem + L.os);
  uint16_t* gh = reinterpret_cast<uint16_t*>(smem + L.gh);
  uint16_t* gl = reinterpret_cast<uint16_t*>(smem + L.gl);
  int32_t* rows_s = reinterpret_cast<int32_t*>(smem + L.rows);
  float* gate_s = reinterpret_cast<float*>(smem + L.gate);
  int* gexp_s = reinterpret_cast<int*>(smem + L.gexp);

  const int E = bank.experts;
  const int32_t* ts = tile_start + (int64_t)j * (E + 1);
  const int b = blockIdx.x;
  if (b >= ts[E]) return;
  int lo = 0, hi = E - 1;  // the expert of this tile: the last e with ts[e] <= b
  while (lo < hi) {
    const int mid = (lo + hi + 1) >> 1;
    if (ts[mid] <= b) lo = mid;
    else hi = mid - 1;
  }
  const int e = lo;
  const int re = bank.ranks[e];
  const int nt = (re + 15) / 16;
  const int cnt = counts[j * E + e];
  const int m0 = (b - ts[e]) * BM;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int64_t din = bank.din, dout = bank.dout;
  for (int m = tid; m < BM; m += kThreads) {
    if (m0 + m < cnt) {
      const int32_t t = rows[seg_start[j * E + e] + m0 + m];
      rows_s[m] = t;
      gate_s[m] = w[(int64_t)t * k + j] * bank.scales[e];
    } else {
      rows_s[m] = -1;
      gate_s[m] = 0.0f;
    }
  }

  // shrink: H = X · A_eᵀ
  const uint16_t* a_e = static_cast<const uint16_t*>(bank.a) + bank.a_off[e];
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> hacc[NT];
#pragma unroll
  for (int n = 0; n < NT; ++n) wmma::fill_fragment(hacc[n], 0.0f);
  for (int64_t k0 = 0; k0 < din; k0 += BK) {
    __syncthreads();  // the previous chunk is consumed (and rows_s is written, first time)
    for (int idx = tid; idx < BM * BK; idx += kThreads) {
      const int m = idx / BK, kx = idx % BK;
      const int32_t t = rows_s[m];
      const int64_t i = k0 + kx;
      const float v = t >= 0 && i < din ? __ldg(x + (int64_t)t * din + i) : 0.0f;
      split_hi_lo<DT>(v, &xh[m * LDX + kx], &xl[m * LDX + kx]);
    }
    for (int idx = tid; idx < nt * 16 * (BK / 8); idx += kThreads) {
      const int q = idx / (BK / 8), c = idx % (BK / 8);
      const int64_t i = k0 + c * 8;
      uint4 v = make_uint4(0, 0, 0, 0);
      if (q < re && i < bank.lda) v = __ldg(reinterpret_cast<const uint4*>(a_e + (int64_t)q * bank.lda + i));
      *reinterpret_cast<uint4*>(as + q * LDX + c * 8) = v;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < BK / 16; ++kk) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, E16, wmma::row_major> fh, fl;
      wmma::load_matrix_sync(fh, reinterpret_cast<const E16*>(xh + warp * 16 * LDX + kk * 16), LDX);
      wmma::load_matrix_sync(fl, reinterpret_cast<const E16*>(xl + warp * 16 * LDX + kk * 16), LDX);
#pragma unroll
      for (int n = 0; n < NT; ++n)
        if (n < nt) {
          wmma::fragment<wmma::matrix_b, 16, 16, 16, E16, wmma::col_major> fb;
          wmma::load_matrix_sync(fb, reinterpret_cast<const E16*>(as + n * 16 * LDX + kk * 16), LDX);
          wmma::mma_sync(hacc[n], fh, fb, hacc[n]);
          wmma::mma_sync(hacc[n], fl, fb, hacc[n]);
        }
    }
  }
  __syncthreads();  // the shrink buffers are dead: H takes their place
#pragma unroll
  for (int n = 0; n < NT; ++n)
    if (n < nt) wmma::store_matrix_sync(hs + warp * 16 * L.ldh + n * 16, hacc[n], L.ldh, wmma::mem_row_major);
  __syncthreads();

  // gate: G = gate ⊙ H, as hi + lo (rank columns past the expert's tiles are zero). Each row
  // is scaled by 2^s first (split_scale_exp: no f16 overflow, lo clear of the subnormals),
  // and the row of output is scaled back by 2^-s: both exact.
  for (int r = 0; r < 16; ++r) {
    const int m = warp * 16 + r;
    float mx = 0.0f;
    for (int q = lane; q < nt * 16; q += 32) mx = combine_max(mx, fabsf(hs[m * L.ldh + q] * gate_s[m]));
    mx = group_max(mx, kFullMask, 32);
    if (lane == 0) gexp_s[m] = split_scale_exp(mx);
  }
  __syncthreads();
  for (int idx = tid; idx < BM * rp; idx += kThreads) {
    const int m = idx / rp, q = idx % rp;
    const float v = q < nt * 16 ? ldexpf(hs[m * L.ldh + q] * gate_s[m], gexp_s[m]) : 0.0f;
    split_hi_lo<DT>(v, &gh[m * L.ldg + q], &gl[m * L.ldg + q]);
  }

  // expand: Y += G · Bᵀ_e
  const uint16_t* bt_e = static_cast<const uint16_t*>(bank.bt) + bank.b_off[e];
  for (int64_t n0 = 0; n0 < dout; n0 += BN) {
    __syncthreads();  // G is written and H read (first chunk); the last chunk's Bᵀ is consumed
    for (int idx = tid; idx < nt * 16 * (BN / 8); idx += kThreads) {
      const int q = idx / (BN / 8), c = idx % (BN / 8);
      const int64_t o = n0 + c * 8;
      uint4 v = make_uint4(0, 0, 0, 0);
      if (q < re && o < bank.ldb) v = __ldg(reinterpret_cast<const uint4*>(bt_e + (int64_t)q * bank.ldb + o));
      *reinterpret_cast<uint4*>(bts + q * LDBT + c * 8) = v;
    }
    __syncthreads();
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> facc[BN / 16];
#pragma unroll
    for (int nn = 0; nn < BN / 16; ++nn) wmma::fill_fragment(facc[nn], 0.0f);
    for (int kq = 0; kq < nt; ++kq) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, E16, wmma::row_major> fh, fl;
      wmma::load_matrix_sync(fh, reinterpret_cast<const E16*>(gh + warp * 16 * L.ldg + kq * 16), L.ldg);
      wmma::load_matrix_sync(fl, reinterpret_cast<const E16*>(gl + warp * 16 * L.ldg + kq * 16), L.ldg);
#pragma unroll
      for (int nn = 0; nn < BN / 16; ++nn) {
        wmma::fragment<wmma::matrix_b, 16, 16, 16, E16, wmma::row_major> fb;
        wmma::load_matrix_sync(fb, reinterpret_cast<const E16*>(bts + kq * 16 * LDBT + nn * 16), LDBT);
        wmma::mma_sync(facc[nn], fh, fb, facc[nn]);
        wmma::mma_sync(facc[nn], fl, fb, facc[nn]);
      }
    }
#pragma unroll
    for (int nn = 0; nn < BN / 16; ++nn)
      wmma::store_matrix_sync(os + warp * 16 * LDO + nn * 16, facc[nn], LDO, wmma::mem_row_major);
    __syncwarp();
    for (int r = 0; r < 16; ++r) {  // each warp adds its own 16 rows into y
      const int m = warp * 16 + r;
      const int32_t t = rows_s[m];
      if (t < 0) continue;
      const int unscale = -gexp_s[m];
      for (int c = lane; c < BN; c += 32)
        if (n0 + c < dout) y[(int64_t)t * dout + n0 + c] += ldexpf(os[m * LDO + c], unscale);
    }
  }
#endif
}

template <int DT, int NT>
pf_status launch_slots(const MoeCall& c, const Smem& L, int rp, const int32_t* rows, const int32_t* counts,
                       const int32_t* seg_start, const int32_t* tile_start) {
  auto kernel = moe_grouped_kernel<DT, NT>;
  if (L.total > 48 * 1024)
    if (cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)L.total))
      return cuda_fail(e, "cudaFuncSetAttribute of lora_moe_grouped");
  const int64_t E = c.bank->experts;
  const int64_t bound = (c.T + BM - 1) / BM + (E < c.T ? E : c.T);
  for (int32_t j = 0; j < c.k; ++j) {
    kernel<<<(unsigned)bound, kThreads, L.total, c.stream>>>(c.bank->view, c.x, c.w, c.k, j, rows, counts, seg_start,
                                                             tile_start, c.y, rp);
    if (pf_status s = check_launch("lora_moe_grouped")) return s;
  }
  return PF_OK;
}

template <int DT>
pf_status launch_tiers(const MoeCall& c, const Smem& L, int rp, const int32_t* rows, const int32_t* counts,
                       const int32_t* seg_start, const int32_t* tile_start) {
  if (rp <= 16) return launch_slots<DT, 1>(c, L, rp, rows, counts, seg_start, tile_start);
  if (rp <= 32) return launch_slots<DT, 2>(c, L, rp, rows, counts, seg_start, tile_start);
  if (rp <= 64) return launch_slots<DT, 4>(c, L, rp, rows, counts, seg_start, tile_start);
  return launch_slots<DT, 8>(c, L, rp, rows, counts, seg_start, tile_start);
}

int rank_tiles(int32_t rank) { return (rank + 15) / 16 * 16; }

}  // namespace

bool moe_grouped_fits(const DeviceState& dev, const MoeCall& c) {
  const int64_t min_t = opt_prefill_min_tokens();
  const pf_cuda_bank& b = *c.bank;
  return min_t >= 0 && c.T >= min_t && b.dtype != PF_F32 && b.rank <= kMaxRank && dev.cc_major >= 8 &&
         c.T * c.k < (int64_t)INT32_MAX && (int64_t)c.k * (b.experts + 1) < (int64_t)INT32_MAX &&
         smem_layout(rank_tiles(b.rank)).total <= dev.smem_optin;
}

pf_status moe_grouped(const DeviceState& dev, const MoeCall& c, Scratch& scratch) {
  const int32_t E = c.bank->experts, k = c.k;
  const int64_t pairs = c.T * k, groups = (int64_t)k * E;
  // scratch: counts | cursor (zeroed together) | seg_start | tile_start | rows
  void* mem = nullptr;
  if (pf_status s = scratch.alloc((size_t)(3 * groups + k * (E + 1) + pairs) * 4, &mem)) return s;
  int32_t* counts = static_cast<int32_t*>(mem);
  int32_t* cursor = counts + groups;
  int32_t* seg_start = cursor + groups;
  int32_t* tile_start = seg_start + groups;
  int32_t* rows = tile_start + k * (E + 1);
  if (cudaError_t e = cudaMemsetAsync(counts, 0, (size_t)2 * groups * 4, c.stream))
    return cuda_fail(e, "cudaMemsetAsync of lora_moe counts");
  const int64_t want = (pairs + kMetaThreads - 1) / kMetaThreads, cap = (int64_t)dev.sms * 8;
  const unsigned blocks = (unsigned)(want < cap ? want : cap);
  const int32_t* ranks = c.bank->view.ranks;
  moe_count_kernel<<<blocks, kMetaThreads, 0, c.stream>>>(c.ids, c.w, pairs, k, E, ranks, counts, c.fault);
  if (pf_status s = check_launch("lora_moe_count")) return s;
  moe_plan_kernel<<<1, kMetaThreads, 0, c.stream>>>(counts, k, E, seg_start, tile_start);
  if (pf_status s = check_launch("lora_moe_plan")) return s;
  moe_scatter_kernel<<<blocks, kMetaThreads, 0, c.stream>>>(c.ids, c.w, pairs, k, E, ranks, seg_start, cursor, rows);
  if (pf_status s = check_launch("lora_moe_scatter")) return s;
  const int rp = rank_tiles(c.bank->rank);
  const Smem L = smem_layout(rp);
  return c.bank->dtype == PF_F16 ? launch_tiers<kF16>(c, L, rp, rows, counts, seg_start, tile_start)
                                 : launch_tiers<kBF16>(c, L, rp, rows, counts, seg_start, tile_start);
}

}  // namespace cuda
}  // namespace pf
