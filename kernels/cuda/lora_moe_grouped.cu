// lora_moe on CUDA, the tensor-core paths (prefill: many tokens, f16/bf16 banks): grouped
// (rank <= 128) and dense (the bank's C = Σ r_e <= 256 columns, E <= 64). Both run the same two
// tile kernels over a tile source (GroupedTiles, DenseTiles below), which says what tokens a
// tile holds, which A / Bᵀ rows it multiplies and how H is gated.
//
// Dense: tiles are 64 consecutive tokens multiplied by every expert's rows, gated per column
// by the token's weight for that column's expert (DenseTiles; a data-check pass first).
//
// Grouped, as vLLM's LoRA metadata and S-LoRA's SGMV: the (token, slot) pairs are grouped by expert,
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
// (bench/results/journal-cuda.md). The number of din splits KS aims at ~8 blocks per SM (at most kMaxSplits).
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
  size_t rowg, cole;        // dense tiles: gate [BM, E] per row and expert, expert [rp] per column
  size_t total;
};

// dense_experts: E for dense tiles (their gate tables), 0 for grouped ones.
__host__ __device__ inline Smem smem_layout(int rp, int dense_experts = 0) {
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
  L.rowg = L.gexp + up128(BM * 4);
  L.cole = L.rowg + up128((size_t)BM * dense_experts * 4);
  L.total = L.cole + (dense_experts ? up128((size_t)rp * 4) : 0);
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
    if (counts && e >= 0 && e < E && w_ok && ranks[e] > 0) atomicAdd(&counts[(p % k) * E + e], 1);
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

// What a tile multiplies: rows [0, re) of A and Bᵀ from element offsets a0, b0 (one expert's
// r_e rows, or a block of every expert's rows), as nt tiles of 16; its BM rows' tokens come
// from the source's token(). Two sources share the kernels below.
struct Tile {
  int64_t a0, b0;
  int re, nt;
  int j, e, cnt, m0;  // grouped: the slot, the expert, its group's token count, the tile's first row in it
};

// Grouped: tile b of slot j holds up to BM of the tokens routed to one expert e in slot j (the
// last e with tile_start[j, e] <= b); its H columns are e's rank rows, gated per row by
// w[t, j] · s[e]. The shrink runs every slot in one launch (slot = blockIdx.z), the expand one
// launch per slot (j). Partial H: [k, tiles, KS, BM, rp].
struct GroupedTiles {
  const int32_t* rows;
  const int32_t* counts;
  const int32_t* seg_start;
  const int32_t* tile_start;
  const float* w;
  int32_t k, j;  // j: the expand's slot
  int64_t tiles;
  int rp;

  __device__ bool find(const pf_cuda_bank_view& bank, int b, int j_, Tile* tl) const {
    const int E = bank.experts;
    const int32_t* ts = tile_start + (int64_t)j_ * (E + 1);
    if (b >= ts[E]) return false;
    int lo = 0, hi = E - 1;
    while (lo < hi) {
      const int mid = (lo + hi + 1) >> 1;
      if (ts[mid] <= b) lo = mid;
      else hi = mid - 1;
    }
    tl->j = j_;
    tl->e = lo;
    tl->re = bank.ranks[lo];
    tl->nt = (tl->re + 15) / 16;
    tl->a0 = bank.a_off[lo];
    tl->b0 = bank.b_off[lo];
    tl->cnt = counts[j_ * E + lo];
    tl->m0 = (b - ts[lo]) * BM;
    return true;
  }
  __host__ GroupedTiles slot(int32_t j_) const {
    GroupedTiles s = *this;
    s.j = j_;
    return s;
  }
  __device__ bool shrink_tile(const pf_cuda_bank_view& bank, int b, int z, Tile* tl) const { return find(bank, b, z, tl); }
  __device__ bool expand_tile(const pf_cuda_bank_view& bank, int b, Tile* tl) const { return find(bank, b, j, tl); }
  __device__ int32_t token(const pf_cuda_bank_view& bank, const Tile& tl, int m) const {
    return tl.m0 + m < tl.cnt ? rows[seg_start[tl.j * bank.experts + tl.e] + tl.m0 + m] : -1;
  }
  // the shrink's output for (tile, slot or column block, split): [BM, ld] f32
  __device__ float* partial(float* part, int b, const Tile& tl, int ks, int KS) const {
    return part + (((int64_t)tl.j * tiles + b) * KS + ks) * BM * rp;
  }
  __device__ int ld() const { return rp; }
  // H[m, q] of tile b: the KS partials summed in ks order
  __device__ float sum_partials(const float* part, int b, const Tile& tl, int KS, int m, int q) const {
    const float* pt = part + ((int64_t)tl.j * tiles + b) * KS * BM * rp;
    float s = 0.0f;
    for (int ks = 0; ks < KS; ++ks) s += pt[((int64_t)ks * BM + m) * rp + q];
    return s;
  }
  // the expand's gates: one per row (every column of H is expert e's)
  __device__ void prepare_gates(const pf_cuda_bank_view& bank, const Tile& tl, const int32_t* rows_s, float* gate_s,
                                float*, int32_t*) const {
    for (int m = threadIdx.x; m < BM; m += kThreads)
      gate_s[m] = rows_s[m] >= 0 ? w[(int64_t)rows_s[m] * k + tl.j] * bank.scales[tl.e] : 0.0f;
  }
  __device__ float gate(const Tile&, const float* gate_s, const float*, const int32_t*, int m, int) const {
    return gate_s[m];
  }
};

// Dense: tile b holds tokens [b·BM, b·BM + BM) in their own order and multiplies every
// expert's rows at once (the C = Σ r_e rows of the packed bank), so each token's x is read and
// its y written once, whatever k. The shrink splits the C columns into blocks of kDenseCols
// (blockIdx.z); the expand takes all of them and gates H[m, q] by the sum of w[t, j] · s[e]
// over the slots j whose expert e owns column q (0 for the others: E / k times the useful
// work, which is why this source is for small C). Rows of tokens with no usable slot are -1:
// never loaded, never written. Partial H: [tiles, Z, KS, BM, kDenseCols].
constexpr int kDenseCols = 128;
struct DenseTiles {
  const int32_t* ids;
  const float* w;
  int32_t k;
  int64_t T, tiles;
  int C, Z, E;

  __host__ DenseTiles slot(int32_t) const { return *this; }  // one expand launch for all slots

  __device__ bool shrink_tile(const pf_cuda_bank_view& bank, int b, int z, Tile* tl) const {
    tl->j = z;
    tl->m0 = b * BM;
    tl->re = C - z * kDenseCols < kDenseCols ? C - z * kDenseCols : kDenseCols;
    tl->nt = (tl->re + 15) / 16;
    tl->a0 = (int64_t)z * kDenseCols * bank.lda;
    tl->b0 = 0;
    return true;
  }
  __device__ bool expand_tile(const pf_cuda_bank_view&, int b, Tile* tl) const {
    tl->j = 0;
    tl->m0 = b * BM;
    tl->re = C;
    tl->nt = (C + 15) / 16;
    tl->a0 = tl->b0 = 0;
    return true;
  }
  __device__ int32_t token(const pf_cuda_bank_view& bank, const Tile& tl, int m) const {
    const int64_t t = (int64_t)tl.m0 + m;
    if (t >= T) return -1;
    for (int jj = 0; jj < k; ++jj) {
      const int32_t e = ids[t * k + jj];
      if (e >= 0 && e < bank.experts && isfinite(w[t * k + jj]) && bank.ranks[e] > 0) return (int32_t)t;
    }
    return -1;
  }
  __device__ float* partial(float* part, int b, const Tile& tl, int ks, int KS) const {
    return part + (((int64_t)b * Z + tl.j) * KS + ks) * BM * kDenseCols;
  }
  __device__ int ld() const { return kDenseCols; }
  __device__ float sum_partials(const float* part, int b, const Tile&, int KS, int m, int q) const {
    const int z = q / kDenseCols, qq = q - z * kDenseCols;
    const float* pt = part + ((int64_t)b * Z + z) * KS * BM * kDenseCols;
    float s = 0.0f;
    for (int ks = 0; ks < KS; ++ks) s += pt[((int64_t)ks * BM + m) * kDenseCols + qq];
    return s;
  }
  // rowg [BM, E]: each row's gate per expert (slots summed); cole [C]: each column's expert
  __device__ void prepare_gates(const pf_cuda_bank_view& bank, const Tile&, const int32_t* rows_s, float*,
                                float* rowg, int32_t* cole) const {
    const int E = bank.experts;
    for (int m = threadIdx.x; m < BM; m += kThreads) {
      float* g = rowg + m * E;
      for (int e = 0; e < E; ++e) g[e] = 0.0f;
      const int32_t t = rows_s[m];
      if (t < 0) continue;
      for (int jj = 0; jj < k; ++jj) {
        const int32_t e = ids[(int64_t)t * k + jj];
        const float wv = w[(int64_t)t * k + jj];
        if (e >= 0 && e < E && isfinite(wv)) g[e] += wv * bank.scales[e];
      }
    }
    if (threadIdx.x == 0)
      for (int e = 0, q = 0; e < E; ++e)
        for (int r = 0; r < bank.ranks[e]; ++r) cole[q++] = e;
  }
  __device__ float gate(const Tile&, const float*, const float* rowg, const int32_t* cole, int m, int q) const {
    return rowg[m * E + cole[q]];
  }
};

// Shrink, split over din: block (b, ks, z) computes the partial H[BM, 16 nt] = X · Aᵀ of tile
// b (z: the grouped source's slot, the dense source's column block) over din chunks
// [ks * cps, (ks + 1) * cps) (chunks of BK) and stores it, f32, where src.partial says (columns
// past the tile's nt are not written and never read). The next chunk's X and A are loaded into
// registers while the tensor cores work on the current one. XVEC: x rows are 16-byte aligned
// (din % 4 == 0).
template <int DT, int NT, bool XVEC, class S>
__global__ void __launch_bounds__(kThreads)
    moe_gshrink_kernel(pf_cuda_bank_view bank, const float* __restrict__ x, S src, float* __restrict__ part, int cps) {
#if (defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800) || defined(PF_CUDA_EMULATE)
  typedef typename Mma16<DT>::T E16;
  __shared__ __align__(128) uint16_t xh[BM * LDX];
  __shared__ __align__(128) uint16_t xl[BM * LDX];
  __shared__ __align__(128) uint16_t as[NT * 16 * LDX];
  __shared__ int32_t rows_s[BM];
  const int b = blockIdx.x, ks = blockIdx.y, KS = gridDim.y;
  Tile tl;
  if (!src.shrink_tile(bank, b, blockIdx.z, &tl)) return;
  const int tid = threadIdx.x, warp = tid >> 5;
  const int64_t din = bank.din;
  for (int m = tid; m < BM; m += kThreads) rows_s[m] = src.token(bank, tl, m);
  __syncthreads();
  const uint16_t* a_e = static_cast<const uint16_t*>(bank.a) + tl.a0;
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
  const int ld = src.ld();
  float* out = src.partial(part, b, tl, ks, KS) + (int64_t)warp * 16 * ld;
#pragma unroll
  for (int n = 0; n < NT; ++n)
    if (n < tl.nt) wmma::store_matrix_sync(out + n * 16, hacc[n], ld, wmma::mem_row_major);
#endif
}

// Gate and expand, split over dout: block (b, nb) sums tile b's KS partial H (in ks order),
// gates it, G = gate ⊙ H as hi + lo, and adds G · Bᵀ into y for outputs [nb * kCols,
// (nb + 1) * kCols). Each y element is updated by one block per launch.
template <int DT, class S>
__global__ void __launch_bounds__(kThreads)
    moe_gexpand_kernel(pf_cuda_bank_view bank, S src, const float* __restrict__ part, int KS, float* __restrict__ y,
                       int rp, int dense_experts) {
#if (defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800) || defined(PF_CUDA_EMULATE)
  typedef typename Mma16<DT>::T E16;
  PF_EXTERN_SHARED(unsigned char, smem);
  const Smem L = smem_layout(rp, dense_experts);
  float* hs = reinterpret_cast<float*>(smem + L.hs);
  uint16_t* bts = reinterpret_cast<uint16_t*>(smem + L.bts);
  float* os = reinterpret_cast<float*>(smem + L.os);
  uint16_t* gh = reinterpret_cast<uint16_t*>(smem + L.gh);
  uint16_t* gl = reinterpret_cast<uint16_t*>(smem + L.gl);
  int32_t* rows_s = reinterpret_cast<int32_t*>(smem + L.rows);
  float* gate_s = reinterpret_cast<float*>(smem + L.gate);
  int* gexp_s = reinterpret_cast<int*>(smem + L.gexp);
  float* rowg = reinterpret_cast<float*>(smem + L.rowg);
  int32_t* cole = reinterpret_cast<int32_t*>(smem + L.cole);

  const int b = blockIdx.x;
  Tile tl;
  if (!src.expand_tile(bank, b, &tl)) return;
  const int nt = tl.nt, re = tl.re;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int64_t dout = bank.dout;
  for (int m = tid; m < BM; m += kThreads) rows_s[m] = src.token(bank, tl, m);
  __syncthreads();
  src.prepare_gates(bank, tl, rows_s, gate_s, rowg, cole);
  __syncthreads();
  // gate ⊙ H, H = Σ_ks partial H in ks order (rows without a token are zero; so are columns
  // past re, which the shrink did not write)
  for (int idx = tid; idx < BM * nt * 16; idx += kThreads) {
    const int m = idx / (nt * 16), q = idx % (nt * 16);
    float s = 0.0f;
    if (rows_s[m] >= 0 && q < re) s = src.sum_partials(part, b, tl, KS, m, q) * src.gate(tl, gate_s, rowg, cole, m, q);
    hs[m * L.ldh + q] = s;
  }
  __syncthreads();

  // gate: G = gate ⊙ H, as hi + lo (rank columns past the expert's tiles are zero). Each row
  // is scaled by 2^s first (split_scale_exp: no f16 overflow, lo clear of the subnormals),
  // and the row of output is scaled back by 2^-s: both exact.
  for (int r = 0; r < 16; ++r) {
    const int m = warp * 16 + r;
    float mx = 0.0f;
    for (int q = lane; q < nt * 16; q += 32) mx = combine_max(mx, fabsf(hs[m * L.ldh + q]));
    mx = group_max(mx, kFullMask, 32);
    if (lane == 0) gexp_s[m] = split_scale_exp(mx);
  }
  __syncthreads();
  for (int idx = tid; idx < BM * rp; idx += kThreads) {
    const int m = idx / rp, q = idx % rp;
    const float v = q < nt * 16 ? ldexpf(hs[m * L.ldh + q], gexp_s[m]) : 0.0f;
    split_hi_lo<DT>(v, &gh[m * L.ldg + q], &gl[m * L.ldg + q]);
  }

  // expand: Y += G · Bᵀ_e over this block's outputs; this thread's share of each BM x BN
  // chunk of y: column c = tid % BN, rows m = i * (kThreads / BN) + tid / BN
  constexpr int kYv = BM * BN / kThreads;
  const int yc = tid % BN, ym = tid / BN;
  const uint16_t* bt_e = static_cast<const uint16_t*>(bank.bt) + tl.b0;
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

// Splits of din for the shrink: enough blocks to fill the device (about 8 per SM) over the
// blocks0 it has unsplit, at most kMaxSplits (the expand sums them), every split non-empty.
void shrink_split(const DeviceState& dev, int64_t din, int64_t blocks0, int* cps, int* KS) {
  const int64_t chunks = (din + BK - 1) / BK;
  int64_t want = ((int64_t)dev.sms * 8 + blocks0 - 1) / blocks0;
  if (want > kMaxSplits) want = kMaxSplits;
  if (want > chunks) want = chunks;
  if (want < 1) want = 1;
  const int64_t per = (chunks + want - 1) / want;
  *cps = (int)per;
  *KS = (int)((chunks + per - 1) / per);
}

// The work of one call over a tile source: the shrink's grid (tiles x KS x Z) and the expand's
// launches (grouped: one per slot, in slot order, so y's k additions come in j order as on
// the CPU; dense: one).
struct TilePlan {
  int64_t tiles;
  unsigned Z;
  int cps, KS, expands, rp, dense_experts;
  Smem L;
};

template <int DT, int NT, class S>
pf_status launch_tiles(const MoeCall& c, const S& src, const TilePlan& P, float* part) {
  const bool xvec = c.bank->din % 4 == 0 && reinterpret_cast<uintptr_t>(c.x) % 16 == 0;
  const dim3 sgrid((unsigned)P.tiles, (unsigned)P.KS, P.Z);
  if (xvec)
    PF_LAUNCH((moe_gshrink_kernel<DT, NT, true, S>), sgrid, kThreads, 0, c.stream)(c.bank->view, c.x, src, part, P.cps);
  else
    PF_LAUNCH((moe_gshrink_kernel<DT, NT, false, S>), sgrid, kThreads, 0, c.stream)(c.bank->view, c.x, src, part, P.cps);
  if (pf_status s = check_launch("lora_moe_grouped_shrink")) return s;
  auto kernel = moe_gexpand_kernel<DT, S>;
  if (P.L.total > 48 * 1024)
    if (cudaError_t e = cudaFuncSetAttribute(reinterpret_cast<const void*>(kernel),
                                           cudaFuncAttributeMaxDynamicSharedMemorySize, (int)P.L.total))
      return cuda_fail(e, "cudaFuncSetAttribute of lora_moe_grouped_expand");
  const dim3 egrid((unsigned)P.tiles, (unsigned)((c.bank->dout + kCols - 1) / kCols));
  for (int32_t j = 0; j < P.expands; ++j) {
    PF_LAUNCH(kernel, egrid, kThreads, P.L.total, c.stream)(c.bank->view, src.slot(j), part, P.KS, c.y, P.rp,
                                                            P.dense_experts);
    if (pf_status s = check_launch("lora_moe_grouped_expand")) return s;
  }
  return PF_OK;
}

// The shrink's accumulators: NT 16-column tiles, the fewest of 1, 2, 4, 8 that hold `cols`.
template <int DT, class S>
pf_status launch_tiers(const MoeCall& c, const S& src, const TilePlan& P, float* part, int cols) {
  if (cols <= 16) return launch_tiles<DT, 1>(c, src, P, part);
  if (cols <= 32) return launch_tiles<DT, 2>(c, src, P, part);
  if (cols <= 64) return launch_tiles<DT, 4>(c, src, P, part);
  return launch_tiles<DT, 8>(c, src, P, part);
}

template <class S>
pf_status launch_dtype(const MoeCall& c, const S& src, const TilePlan& P, float* part, int cols) {
  return c.bank->dtype == PF_F16 ? launch_tiers<kF16>(c, src, P, part, cols) : launch_tiers<kBF16>(c, src, P, part, cols);
}

int rank_tiles(int32_t rank) { return (rank + 15) / 16 * 16; }

// Dense tiles: C = Σ r_e columns, at most kDenseMaxCols; their gate table holds E per row.
constexpr int64_t kDenseMaxCols = 256;
constexpr int32_t kDenseMaxExperts = 64;
int64_t dense_columns(const pf_cuda_bank& b) {
  int64_t C = 0;
  for (int32_t r : b.ranks) C += r;
  return C;
}

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
  PF_LAUNCH(moe_count_kernel, blocks, kMetaThreads, 0, c.stream)(c.ids, c.w, pairs, k, E, ranks, counts, c.fault);
  if (pf_status s = check_launch("lora_moe_count")) return s;
  PF_LAUNCH(moe_plan_kernel, 1, kMetaThreads, 0, c.stream)(counts, k, E, seg_start, tile_start);
  if (pf_status s = check_launch("lora_moe_plan")) return s;
  PF_LAUNCH(moe_scatter_kernel, blocks, kMetaThreads, 0, c.stream)(c.ids, c.w, pairs, k, E, ranks, seg_start, cursor,
                                                                   rows);
  if (pf_status s = check_launch("lora_moe_scatter")) return s;
  TilePlan P;
  P.rp = rank_tiles(c.bank->rank);
  P.dense_experts = 0;
  P.L = smem_layout(P.rp);
  // tiles per slot: a bound on the real count (blocks past it exit)
  P.tiles = (c.T + BM - 1) / BM + (E < c.T ? E : c.T);
  P.Z = (unsigned)k;
  P.expands = k;
  shrink_split(dev, c.bank->din, (int64_t)k * P.tiles, &P.cps, &P.KS);
  void* pmem = nullptr;  // partial H: [k, tiles, KS, BM, rp] f32
  if (pf_status s = scratch.alloc((size_t)k * P.tiles * P.KS * BM * P.rp * sizeof(float), &pmem)) return s;
  const GroupedTiles src{rows, counts, seg_start, tile_start, c.w, k, 0, P.tiles, P.rp};
  return launch_dtype(c, src, P, static_cast<float*>(pmem), P.rp);
}

bool moe_dense_fits(const DeviceState& dev, const MoeCall& c) {
  const int64_t min_t = opt_prefill_min_tokens();
  const pf_cuda_bank& b = *c.bank;
  const int64_t C = dense_columns(b);
  return min_t >= 0 && c.T >= min_t && b.dtype != PF_F32 && dev.cc_major >= 8 && C >= 1 &&
         C <= opt_dense_max_columns() && C <= kDenseMaxCols && b.experts <= kDenseMaxExperts &&
         c.T * c.k < (int64_t)INT32_MAX && ((int64_t)b.dout + kCols - 1) / kCols <= 65535 &&
         smem_layout(rank_tiles((int32_t)C), b.experts).total <= dev.smem_optin;
}

pf_status moe_dense(const DeviceState& dev, const MoeCall& c, Scratch& scratch) {
  const int32_t E = c.bank->experts, k = c.k;
  const int64_t pairs = c.T * k;
  // the data checks of the grouped path's count pass, without the counts
  const int64_t want = (pairs + kMetaThreads - 1) / kMetaThreads, cap = (int64_t)dev.sms * 8;
  PF_LAUNCH(moe_count_kernel, (unsigned)(want < cap ? want : cap), kMetaThreads, 0, c.stream)(
      c.ids, c.w, pairs, k, E, c.bank->view.ranks, nullptr, c.fault);
  if (pf_status s = check_launch("lora_moe_count")) return s;
  const int C = (int)dense_columns(*c.bank);
  TilePlan P;
  P.rp = rank_tiles(C);
  P.dense_experts = E;
  P.L = smem_layout(P.rp, E);
  P.tiles = (c.T + BM - 1) / BM;
  P.Z = (unsigned)((C + kDenseCols - 1) / kDenseCols);
  P.expands = 1;
  shrink_split(dev, c.bank->din, P.tiles * P.Z, &P.cps, &P.KS);
  void* pmem = nullptr;  // partial H: [tiles, Z, KS, BM, kDenseCols] f32
  if (pf_status s = scratch.alloc((size_t)P.tiles * P.Z * P.KS * BM * kDenseCols * sizeof(float), &pmem)) return s;
  const DenseTiles src{c.ids, c.w, k, c.T, P.tiles, C, (int)P.Z, E};
  return launch_dtype(c, src, P, static_cast<float*>(pmem), C < kDenseCols ? C : kDenseCols);
}

}  // namespace cuda
}  // namespace pf
