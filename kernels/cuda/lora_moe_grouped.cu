// lora_moe on CUDA, the grouped path (prefill: many tokens, f16/bf16 banks, rank <= 128).
//
// As vLLM's LoRA metadata and S-LoRA's SGMV: the (token, slot) pairs are grouped by expert,
// separately per slot j, so tokens that share an expert share its weight tiles:
//   count:   counts[j, e] = #{t : ids[t, j] = e}   (also checks ids and weights: faults)
//   plan:    seg_start[j, e] (where each group's token list starts), tile_start[j, e]
//            (first BM-token tile of each group; entry E = the slot's tile count)
//   scatter: rows[seg_start[j, e] + n] = the n-th token of group (j, e)
//   shrink:  one launch, grid (tile, din split ks, slot j): each block computes the partial
//            H[BM, rp] = X[BM, din_ks] · A_eᵀ of one tile of BM tokens of one expert over its
//            share of din (tensor cores, BK chunks, the next chunk loaded into registers while
//            the MMAs run) and stores it, f32, to scratch ([k, tiles, KS, BM, rp], L2-sized)
//   expand:  for each slot j (in order, so each y element is updated by one block per launch
//            and the k experts add in j order, as on the CPU), one launch, grid (tile, kCols
//            outputs): each block sums its tile's KS partials (in ks order), gates them
//            G = (w[t, j] · s[e]) ⊙ H in shared memory, and adds G · Bᵀ_e into its y columns
//            (tensor cores, BN chunks; y loads in flight during the MMAs).
// Splitting din and dout over blocks is what fills the device: one block per tile walking all
// of din and dout (the first version) ran 74 blocks at T 4096 and 2 at T 1, latency-bound
// (NOTES.md). The number of din splits KS aims at ~8 blocks per SM (at most kMaxSplits).
// rp = rank rounded up to 16; each expert uses only ceil(r_e / 16) rank tiles. The f32 side
// of each product (X, then G) is split as hi + lo in the bank's 16-bit type (split_hi_lo),
// two MMAs per step, so results keep about f32 accuracy against exact f16/bf16 weights (G
// rows are scaled by a power of two first; X is not: for f16 banks |x| must stay below 65504,
// and below 2^-3 its split is exact to 2^-25 absolute rather than 2^-21 relative).
// Rows of a tile past its group's end are zero and never written. The tile grid dimension is
// the bound ceil(T / BM) + min(E, T) on each slot's tile count; blocks past the real count exit.
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
constexpr int kCols = 256;      // dout outputs per expand block (kCols / BN chunks)
constexpr int kMaxSplits = 16;  // most din splits of the shrink

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

// Dynamic shared memory of one expand block, in bytes, for rank tiles rp (a multiple of 16).
// (The shrink kernel's buffers are static: X hi / lo [BM, LDX] and A [16 NT, LDX], 16-bit.)
struct Smem {
  int ldh, ldg;             // pitches of H (f32) and G (16-bit)
  size_t hs;                // H [BM, ldh] f32, summed from the partials
  size_t bts, os;           // Bᵀ chunk [rp, LDBT], output tile [BM, LDO] f32 (alias H)
  size_t gh, gl;            // G hi / lo [BM, ldg]
  size_t rows, gate, gexp;  // token, gate and G scale exponent of each tile row
  size_t total;
};

__host__ __device__ inline Smem smem_layout(int rp) {
  Smem L;
  L.ldh = rp + 4;
  L.ldg = rp + 8;
  const size_t h_bytes = up128((size_t)BM * L.ldh * 4);
  const size_t bt_bytes = up128((size_t)rp * LDBT * 2), o_bytes = up128((size_t)BM * LDO * 4);
  const size_t g_bytes = up128((size_t)BM * L.ldg * 2);
  size_t shared = h_bytes;
  if (bt_bytes + o_bytes > shared) shared = bt_bytes + o_bytes;
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

// ---- the tile kernels --------------------------------------------------------------------------

// The tile b of slot j: its expert (the last e with ts[e] <= b), and each row's token (or -1).
// Returns false for blocks past the slot's tile count.
struct Tile {
  int e, re, nt, cnt, m0;
};
__device__ __forceinline__ bool find_tile(const pf_cuda_bank_view& bank, int32_t j, int b,
                                          const int32_t* __restrict__ counts, const int32_t* __restrict__ tile_start,
                                          Tile* tl) {
  const int E = bank.experts;
  const int32_t* ts = tile_start + (int64_t)j * (E + 1);
  if (b >= ts[E]) return false;
  int lo = 0, hi = E - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) >> 1;
    if (ts[mid] <= b) lo = mid;
    else hi = mid - 1;
  }
  tl->e = lo;
  tl->re = bank.ranks[lo];
  tl->nt = (tl->re + 15) / 16;
  tl->cnt = counts[j * E + lo];
  tl->m0 = (b - ts[lo]) * BM;
  return true;
}

// Shrink, split over din: block (b, ks, j) computes the partial H[BM, rp] = X · A_eᵀ of tile b
// of slot j over din chunks [ks * cps, (ks + 1) * cps) (chunks of BK) and stores it, f32, to
// part[((j * tiles + b) * KS + ks) * BM * rp ...] (rank columns past the expert's tiles are not
// written and never read). The next chunk's X and A are loaded into registers while the tensor
// cores work on the current one. XVEC: x rows are 16-byte aligned (din % 4 == 0).
template <int DT, int NT, bool XVEC>
__global__ void __launch_bounds__(kThreads)
    moe_gshrink_kernel(pf_cuda_bank_view bank, const float* __restrict__ x, const int32_t* __restrict__ rows,
                       const int32_t* __restrict__ counts, const int32_t* __restrict__ seg_start,
                       const int32_t* __restrict__ tile_start, float* __restrict__ part, int rp, int cps) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  typedef typename Mma16<DT>::T E16;
  __shared__ __align__(128) uint16_t xh[BM * LDX];
  __shared__ __align__(128) uint16_t xl[BM * LDX];
  __shared__ __align__(128) uint16_t as[NT * 16 * LDX];
  __shared__ int32_t rows_s[BM];
  const int j = blockIdx.z, b = blockIdx.x, ks = blockIdx.y, KS = gridDim.y;
  Tile tl;
  if (!find_tile(bank, j, b, counts, tile_start, &tl)) return;
  const int E = bank.experts, tid = threadIdx.x, warp = tid >> 5;
  const int64_t din = bank.din;
  for (int m = tid; m < BM; m += kThreads)
    rows_s[m] = tl.m0 + m < tl.cnt ? rows[seg_start[j * E + tl.e] + tl.m0 + m] : -1;
  __syncthreads();
  const uint16_t* a_e = static_cast<const uint16_t*>(bank.a) + bank.a_off[tl.e];
  const int64_t chunks = (din + BK - 1) / BK;
  const int64_t c_begin = (int64_t)ks * cps, c_end = c_begin + cps < chunks ? c_begin + cps : chunks;

  // this thread's share of one chunk: X rows m = i * 8 + tid / 16, columns (tid % 16) * 4 .. + 4;
  // A rows q = i * 16 + tid / 8, columns (tid % 8) * 8 .. + 8
  constexpr int kXv = BM * BK / 4 / kThreads;  // 8 float4
  const int xc = (tid & 15) * 4, xm = tid >> 4;
  const int ac = (tid & 7) * 8, aq = tid >> 3;
  int32_t trow[kXv];
#pragma unroll
  for (int i = 0; i < kXv; ++i) trow[i] = rows_s[i * 8 + xm];
  float4 xr[kXv];
  uint4 ar[NT];
  auto load = [&](int64_t c) {
    const int64_t k0 = c * BK;
#pragma unroll
    for (int i = 0; i < kXv; ++i) {
      const int64_t i0 = k0 + xc;
      float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
      if (trow[i] >= 0) {
        const float* xp = x + (int64_t)trow[i] * din + i0;
        if (XVEC) {
          if (i0 < din) v = __ldg(reinterpret_cast<const float4*>(xp));
        } else {
          if (i0 < din) v.x = __ldg(xp);
          if (i0 + 1 < din) v.y = __ldg(xp + 1);
          if (i0 + 2 < din) v.z = __ldg(xp + 2);
          if (i0 + 3 < din) v.w = __ldg(xp + 3);
        }
      }
      xr[i] = v;
    }
#pragma unroll
    for (int n = 0; n < NT; ++n) {
      const int q = n * 16 + aq;
      const int64_t i = k0 + ac;
      uint4 v = make_uint4(0, 0, 0, 0);
      if (q < tl.re && i < bank.lda) v = __ldg(reinterpret_cast<const uint4*>(a_e + (int64_t)q * bank.lda + i));
      ar[n] = v;
    }
  };

  wmma::fragment<wmma::accumulator, 16, 16, 16, float> hacc[NT];
#pragma unroll
  for (int n = 0; n < NT; ++n) wmma::fill_fragment(hacc[n], 0.0f);
  if (c_begin < c_end) load(c_begin);
  for (int64_t c = c_begin; c < c_end; ++c) {
    __syncthreads();  // the previous chunk is consumed
#pragma unroll
    for (int i = 0; i < kXv; ++i) {
      uint16_t* ph = xh + (i * 8 + xm) * LDX + xc;
      uint16_t* pl = xl + (i * 8 + xm) * LDX + xc;
      split_hi_lo<DT>(xr[i].x, ph, pl);
      split_hi_lo<DT>(xr[i].y, ph + 1, pl + 1);
      split_hi_lo<DT>(xr[i].z, ph + 2, pl + 2);
      split_hi_lo<DT>(xr[i].w, ph + 3, pl + 3);
    }
#pragma unroll
    for (int n = 0; n < NT; ++n)
      if (n < tl.nt) *reinterpret_cast<uint4*>(as + (n * 16 + aq) * LDX + ac) = ar[n];
    __syncthreads();
    if (c + 1 < c_end) load(c + 1);  // in flight during the MMAs
#pragma unroll
    for (int kk = 0; kk < BK / 16; ++kk) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, E16, wmma::row_major> fh, fl;
      wmma::load_matrix_sync(fh, reinterpret_cast<const E16*>(xh + warp * 16 * LDX + kk * 16), LDX);
      wmma::load_matrix_sync(fl, reinterpret_cast<const E16*>(xl + warp * 16 * LDX + kk * 16), LDX);
#pragma unroll
      for (int n = 0; n < NT; ++n)
        if (n < tl.nt) {
          wmma::fragment<wmma::matrix_b, 16, 16, 16, E16, wmma::col_major> fb;
          wmma::load_matrix_sync(fb, reinterpret_cast<const E16*>(as + n * 16 * LDX + kk * 16), LDX);
          wmma::mma_sync(hacc[n], fh, fb, hacc[n]);
          wmma::mma_sync(hacc[n], fl, fb, hacc[n]);
        }
    }
  }
  float* out = part + (((int64_t)j * gridDim.x + b) * KS + ks) * BM * rp + (int64_t)warp * 16 * rp;
#pragma unroll
  for (int n = 0; n < NT; ++n)
    if (n < tl.nt) wmma::store_matrix_sync(out + n * 16, hacc[n], rp, wmma::mem_row_major);
#endif
}

// Gate and expand, split over dout: block (b, nb) of slot j sums tile b's KS partial H (in ks
// order), gates it, G = gate ⊙ H as hi + lo, and adds G · Bᵀ_e into y for outputs
// [nb * kCols, (nb + 1) * kCols). Each y element is updated by one block per launch.
template <int DT, int NT>
__global__ void __launch_bounds__(kThreads)
    moe_gexpand_kernel(pf_cuda_bank_view bank, const float* __restrict__ w, int32_t k, int32_t j,
                       const int32_t* __restrict__ rows, const int32_t* __restrict__ counts,
                       const int32_t* __restrict__ seg_start, const int32_t* __restrict__ tile_start,
                       const float* __restrict__ part, int KS, float* __restrict__ y, int rp) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  typedef typename Mma16<DT>::T E16;
  extern __shared__ __align__(128) unsigned char smem[];
  const Smem L = smem_layout(rp);
  float* hs = reinterpret_cast<float*>(smem + L.hs);
  uint16_t* bts = reinterpret_cast<uint16_t*>(smem + L.bts);
  float* os = reinterpret_cast<float*>(smem + L.os);
  uint16_t* gh = reinterpret_cast<uint16_t*>(smem + L.gh);
  uint16_t* gl = reinterpret_cast<uint16_t*>(smem + L.gl);
  int32_t* rows_s = reinterpret_cast<int32_t*>(smem + L.rows);
  float* gate_s = reinterpret_cast<float*>(smem + L.gate);
  int* gexp_s = reinterpret_cast<int*>(smem + L.gexp);

  const int b = blockIdx.x;
  Tile tl;
  if (!find_tile(bank, j, b, counts, tile_start, &tl)) return;
  const int E = bank.experts, e = tl.e, nt = tl.nt, re = tl.re;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int64_t dout = bank.dout;
  for (int m = tid; m < BM; m += kThreads) {
    if (tl.m0 + m < tl.cnt) {
      const int32_t t = rows[seg_start[j * E + e] + tl.m0 + m];
      rows_s[m] = t;
      gate_s[m] = w[(int64_t)t * k + j] * bank.scales[e];
    } else {
      rows_s[m] = -1;
      gate_s[m] = 0.0f;
    }
  }
  __syncthreads();
  // H = Σ_ks partial H, in ks order (rows past the group's end are zero)
  const float* pt = part + ((int64_t)j * gridDim.x + b) * KS * BM * rp;
  for (int idx = tid; idx < BM * nt * 16; idx += kThreads) {
    const int m = idx / (nt * 16), q = idx % (nt * 16);
    float s = 0.0f;
    if (rows_s[m] >= 0)
      for (int ks = 0; ks < KS; ++ks) s += pt[((int64_t)ks * BM + m) * rp + q];
    hs[m * L.ldh + q] = s;
  }
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

  // expand: Y += G · Bᵀ_e over this block's outputs; this thread's share of each BM x BN
  // chunk of y: column c = tid % BN, rows m = i * (kThreads / BN) + tid / BN
  constexpr int kYv = BM * BN / kThreads;
  const int yc = tid % BN, ym = tid / BN;
  const uint16_t* bt_e = static_cast<const uint16_t*>(bank.bt) + bank.b_off[e];
  const int64_t n_begin = (int64_t)blockIdx.y * kCols;
  const int64_t n_end = n_begin + kCols < dout ? n_begin + kCols : dout;
  for (int64_t n0 = n_begin; n0 < n_end; n0 += BN) {
    __syncthreads();  // G is written and H read (first chunk); the last chunk's Bᵀ / os are consumed
    float yv[kYv];
#pragma unroll
    for (int i = 0; i < kYv; ++i) {  // y loads in flight during the MMAs
      const int32_t t = rows_s[i * (kThreads / BN) + ym];
      yv[i] = t >= 0 && n0 + yc < dout ? y[(int64_t)t * dout + n0 + yc] : 0.0f;
    }
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
    __syncthreads();
#pragma unroll
    for (int i = 0; i < kYv; ++i) {
      const int m = i * (kThreads / BN) + ym;
      const int32_t t = rows_s[m];
      if (t >= 0 && n0 + yc < dout) y[(int64_t)t * dout + n0 + yc] = yv[i] + ldexpf(os[m * LDO + yc], -gexp_s[m]);
    }
  }
#endif
}

// Splits of din for the shrink: enough blocks to fill the device (about 8 per SM), at most
// kMaxSplits (the expand sums them), every split non-empty.
void shrink_split(const DeviceState& dev, const MoeCall& c, int64_t tiles, int* cps, int* KS) {
  const int64_t chunks = ((int64_t)c.bank->din + BK - 1) / BK;
  const int64_t blocks0 = (int64_t)c.k * tiles;
  int64_t want = ((int64_t)dev.sms * 8 + blocks0 - 1) / blocks0;
  if (want > kMaxSplits) want = kMaxSplits;
  if (want > chunks) want = chunks;
  if (want < 1) want = 1;
  const int64_t per = (chunks + want - 1) / want;
  *cps = (int)per;
  *KS = (int)((chunks + per - 1) / per);
}

template <int DT, int NT>
pf_status launch_tiles(const DeviceState& dev, const MoeCall& c, const Smem& L, int rp, const int32_t* rows,
                       const int32_t* counts, const int32_t* seg_start, const int32_t* tile_start, float* part,
                       int64_t tiles, int cps, int KS) {
  const bool xvec = c.bank->din % 4 == 0 && reinterpret_cast<uintptr_t>(c.x) % 16 == 0;
  const dim3 sgrid((unsigned)tiles, (unsigned)KS, (unsigned)c.k);
  if (xvec)
    moe_gshrink_kernel<DT, NT, true><<<sgrid, kThreads, 0, c.stream>>>(c.bank->view, c.x, rows, counts, seg_start,
                                                                        tile_start, part, rp, cps);
  else
    moe_gshrink_kernel<DT, NT, false><<<sgrid, kThreads, 0, c.stream>>>(c.bank->view, c.x, rows, counts, seg_start,
                                                                         tile_start, part, rp, cps);
  if (pf_status s = check_launch("lora_moe_grouped_shrink")) return s;
  auto kernel = moe_gexpand_kernel<DT, NT>;
  if (L.total > 48 * 1024)
    if (cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)L.total))
      return cuda_fail(e, "cudaFuncSetAttribute of lora_moe_grouped_expand");
  const dim3 egrid((unsigned)tiles, (unsigned)((c.bank->dout + kCols - 1) / kCols));
  for (int32_t j = 0; j < c.k; ++j) {  // slots in order: y's k additions in j order, as on the CPU
    kernel<<<egrid, kThreads, L.total, c.stream>>>(c.bank->view, c.w, c.k, j, rows, counts, seg_start, tile_start,
                                                   part, KS, c.y, rp);
    if (pf_status s = check_launch("lora_moe_grouped_expand")) return s;
  }
  (void)dev;
  return PF_OK;
}

template <int DT>
pf_status launch_tiers(const DeviceState& dev, const MoeCall& c, const Smem& L, int rp, const int32_t* rows,
                       const int32_t* counts, const int32_t* seg_start, const int32_t* tile_start, float* part,
                       int64_t tiles, int cps, int KS) {
  if (rp <= 16) return launch_tiles<DT, 1>(dev, c, L, rp, rows, counts, seg_start, tile_start, part, tiles, cps, KS);
  if (rp <= 32) return launch_tiles<DT, 2>(dev, c, L, rp, rows, counts, seg_start, tile_start, part, tiles, cps, KS);
  if (rp <= 64) return launch_tiles<DT, 4>(dev, c, L, rp, rows, counts, seg_start, tile_start, part, tiles, cps, KS);
  return launch_tiles<DT, 8>(dev, c, L, rp, rows, counts, seg_start, tile_start, part, tiles, cps, KS);
}

int rank_tiles(int32_t rank) { return (rank + 15) / 16 * 16; }

}  // namespace

bool moe_grouped_fits(const DeviceState& dev, const MoeCall& c) {
  const int64_t min_t = opt_prefill_min_tokens();
  const pf_cuda_bank& b = *c.bank;
  return min_t >= 0 && c.T >= min_t && b.dtype != PF_F32 && b.rank <= kMaxRank && dev.cc_major >= 8 &&
         c.T * c.k < (int64_t)INT32_MAX && (int64_t)c.k * (b.experts + 1) < (int64_t)INT32_MAX && c.k <= 65535 &&
         ((int64_t)b.dout + kCols - 1) / kCols <= 65535 &&
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
  // tiles per slot: a bound on the real count (blocks past it exit)
  const int64_t tiles = (c.T + BM - 1) / BM + (E < c.T ? E : c.T);
  int cps = 1, KS = 1;
  shrink_split(dev, c, tiles, &cps, &KS);
  void* pmem = nullptr;  // partial H: [k, tiles, KS, BM, rp] f32
  if (pf_status s = scratch.alloc((size_t)k * tiles * KS * BM * rp * sizeof(float), &pmem)) return s;
  float* part = static_cast<float*>(pmem);
  return c.bank->dtype == PF_F16
             ? launch_tiers<kF16>(dev, c, L, rp, rows, counts, seg_start, tile_start, part, tiles, cps, KS)
             : launch_tiers<kBF16>(dev, c, L, rp, rows, counts, seg_start, tile_start, part, tiles, cps, KS);
}

}  // namespace cuda
}  // namespace pf
