// fold_experts on CUDA: each request's mix as one rank-R adapter in its batch slot.
//
//   ids [B, k], w [B, k], slots [B] or NULL;  a_out [S, din, R], b_out [S, R, dout]   (personafuse.h)
//     a_out[s, i, j*rank + q] = A_e[q, i]                 q < r_e
//     b_out[s, j*rank + q, :] = (w[b, j] s[e]) B_e[:, q]   q < r_e;   every other entry 0
//
// Bandwidth-bound: every output byte is written once, with 16-byte weight loads.
//   A part: a block transposes a tile of 64 din rows x 32 A_cat columns through shared
//     memory: reads A_e rows along din (16-byte loads), writes a_out rows along R (float4
//     stores when R % 4 == 0).
//   B part: a row copy with scale: 16-byte loads of Bᵀ_e rows, float4 stores when dout % 4 == 0.
// The weight is folded in as alpha = w * s, then alpha * B (the CPU order): slots agree with
// the CPU bit for bit. An id outside [-1, E) or a non-finite weight zeroes its block (fault).
#include <math.h>

#include "bank.cuh"
#include "warp.cuh"

namespace pf {
namespace cuda {
namespace {

constexpr int kTI = 64;  // din rows per A tile
constexpr int kTC = 32;  // A_cat columns per A tile
constexpr int kThreads = 256;

// The expert and rank row behind column c = j * rank + q of request b's A_cat / B_cat;
// .x = -1 when the column is zero.
__device__ __forceinline__ int2 column_expert(const pf_cuda_bank_view& bank, const int32_t* ids, const float* w,
                                              int64_t b, int32_t k, int64_t c) {
  const int64_t j = c / bank.rank;
  const int q = (int)(c - j * bank.rank);
  if (j >= k) return make_int2(-1, q);
  const int32_t e = ids[b * k + j];
  if (e < 0 || e >= bank.experts || !isfinite(w[b * k + j]) || q >= bank.ranks[e]) return make_int2(-1, q);
  return make_int2(e, q);
}

template <int DT, bool VEC>
__global__ void __launch_bounds__(kThreads)
    fold_a_kernel(pf_cuda_bank_view bank, const int32_t* __restrict__ ids, const float* __restrict__ w, int64_t B,
                  int32_t k, const int32_t* __restrict__ slots, int64_t num_slots, int32_t R, float* __restrict__ a_out) {
  constexpr int N = Vec16<DT>::N;
  __shared__ float tile[kTC][kTI + 1];
  const int64_t din = bank.din;
  const int64_t i0 = (int64_t)blockIdx.x * kTI;
  const int64_t c0 = (int64_t)blockIdx.z * kTC;
  for (int64_t b = blockIdx.y; b < B; b += gridDim.y) {
    const int64_t s = slots ? slots[b] : b;
    if (s < 0 || s >= num_slots) continue;  // uniform over the block (a recorded fault)
    for (int idx = threadIdx.x; idx < kTC * (kTI / N); idx += kThreads) {
      const int cc = idx / (kTI / N), v = idx % (kTI / N);
      const int64_t c = c0 + cc, i = i0 + v * N;
      const int2 eq = c < R ? column_expert(bank, ids, w, b, k, c) : make_int2(-1, 0);
      const int32_t e = eq.x;
      const int q = eq.y;
      float vals[N];
#pragma unroll
      for (int u = 0; u < N; ++u) vals[u] = 0.0f;
      if (e >= 0 && i < bank.lda) load_weights16<DT>(bank.a, bank.a_off[e] + (int64_t)q * bank.lda + i, vals);
#pragma unroll
      for (int u = 0; u < N; ++u) tile[cc][v * N + u] = vals[u];
    }
    __syncthreads();
    float* out = a_out + s * din * R;
    if (VEC) {
      for (int idx = threadIdx.x; idx < kTI * (kTC / 4); idx += kThreads) {
        const int ii = idx / (kTC / 4), c4 = (idx % (kTC / 4)) * 4;
        const int64_t i = i0 + ii, c = c0 + c4;
        if (i < din && c < R)
          *reinterpret_cast<float4*>(out + i * R + c) =
              make_float4(tile[c4][ii], tile[c4 + 1][ii], tile[c4 + 2][ii], tile[c4 + 3][ii]);
      }
    } else {
      for (int idx = threadIdx.x; idx < kTI * kTC; idx += kThreads) {
        const int ii = idx / kTC, cc = idx % kTC;
        const int64_t i = i0 + ii, c = c0 + cc;
        if (i < din && c < R) out[i * R + c] = tile[cc][ii];
      }
    }
    __syncthreads();
  }
}

template <int DT, bool VEC>
__global__ void __launch_bounds__(kThreads)
    fold_b_kernel(pf_cuda_bank_view bank, const int32_t* __restrict__ ids, const float* __restrict__ w, int64_t B,
                  int32_t k, const int32_t* __restrict__ slots, int64_t num_slots, int32_t R, float* __restrict__ b_out,
                  unsigned long long* fault) {
  constexpr int N = Vec16<DT>::N;
  const int64_t dout = bank.dout;
  const int64_t o = ((int64_t)blockIdx.x * kThreads + threadIdx.x) * N;
  for (int64_t row = blockIdx.y; row < B * R; row += gridDim.y) {
    const int64_t b = row / R, c = row - b * R;
    if (c == 0 && blockIdx.x == 0)  // each request's ids and weights are checked once
      for (int j = threadIdx.x; j < k; j += kThreads) {
        const int32_t e = ids[b * k + j];
        if (e < -1 || e >= bank.experts) record_fault(fault, kFaultIds, b * k + j);
        if (!isfinite(w[b * k + j])) record_fault(fault, kFaultWeights, b * k + j);
      }
    const int64_t s = slots ? slots[b] : b;
    if (s < 0 || s >= num_slots || o >= dout) continue;
    const int2 eq = column_expert(bank, ids, w, b, k, c);
    const int32_t e = eq.x;
    const int q = eq.y;
    float vals[N];
#pragma unroll
    for (int u = 0; u < N; ++u) vals[u] = 0.0f;
    if (e >= 0) {
      const float alpha = w[b * k + c / bank.rank] * bank.scales[e];
      load_weights16<DT>(bank.bt, bank.b_off[e] + (int64_t)q * bank.ldb + o, vals);
#pragma unroll
      for (int u = 0; u < N; ++u) vals[u] = alpha * vals[u];
    }
    float* dst = b_out + (s * R + c) * dout + o;
    if (VEC) {
#pragma unroll
      for (int v = 0; v < N / 4; ++v)
        if (o + 4 * v < dout)
          *reinterpret_cast<float4*>(dst + 4 * v) =
              make_float4(vals[4 * v], vals[4 * v + 1], vals[4 * v + 2], vals[4 * v + 3]);
    } else {
#pragma unroll
      for (int u = 0; u < N; ++u)
        if (o + u < dout) dst[u] = vals[u];
    }
  }
}

// slots: each in [0, num_slots) and none a repeat of an earlier one. The fault is the CPU op's,
// the first request (in request order) whose slot is out of range or named before, so the
// check takes two passes: first[s] = the first request naming slot s ([num_slots], all ones
// before the first pass), then every request not first for its slot is a fault. (One pass over
// a counter per slot marked whichever request came second in time, and ranked every range
// fault before every repeat.)
__global__ void fold_slots_first_kernel(const int32_t* __restrict__ slots, int64_t B, int64_t num_slots,
                                        unsigned long long* first) {
  for (int64_t b = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; b < B; b += (int64_t)gridDim.x * blockDim.x) {
    const int32_t s = slots[b];
    if (s >= 0 && s < num_slots) atomicMin(&first[s], (unsigned long long)b);
  }
}

__global__ void fold_slots_kernel(const int32_t* __restrict__ slots, int64_t B, int64_t num_slots,
                                  const unsigned long long* __restrict__ first, unsigned long long* fault) {
  for (int64_t b = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; b < B; b += (int64_t)gridDim.x * blockDim.x) {
    const int32_t s = slots[b];
    if (s < 0 || s >= num_slots || first[s] != (unsigned long long)b) record_fault(fault, kFaultSlots, b);
  }
}

template <int DT>
pf_status fold(const pf_cuda_bank& bank, const int32_t* ids, const float* w, int64_t B, int32_t k, const int32_t* slots,
               int64_t num_slots, int32_t R, float* a_out, float* b_out, unsigned long long* fault, cudaStream_t st) {
  constexpr int N = Vec16<DT>::N;
  const pf_cuda_bank_view& v = bank.view;
  const dim3 agrid((unsigned)((v.din + kTI - 1) / kTI), (unsigned)(B < kMaxGridY ? B : kMaxGridY),
                   (unsigned)((R + kTC - 1) / kTC));
  if (R % 4 == 0 && reinterpret_cast<uintptr_t>(a_out) % 16 == 0)
    PF_LAUNCH((fold_a_kernel<DT, true>), agrid, kThreads, 0, st)(v, ids, w, B, k, slots, num_slots, R, a_out);
  else
    PF_LAUNCH((fold_a_kernel<DT, false>), agrid, kThreads, 0, st)(v, ids, w, B, k, slots, num_slots, R, a_out);
  if (pf_status s = check_launch("fold_experts_a")) return s;
  const int64_t rows = B * R;
  const dim3 bgrid((unsigned)((v.dout + kThreads * N - 1) / (kThreads * N)),
                   (unsigned)(rows < kMaxGridY ? rows : kMaxGridY));
  if (v.dout % 4 == 0 && reinterpret_cast<uintptr_t>(b_out) % 16 == 0)
    PF_LAUNCH((fold_b_kernel<DT, true>), bgrid, kThreads, 0, st)(v, ids, w, B, k, slots, num_slots, R, b_out, fault);
  else
    PF_LAUNCH((fold_b_kernel<DT, false>), bgrid, kThreads, 0, st)(v, ids, w, B, k, slots, num_slots, R, b_out, fault);
  return check_launch("fold_experts_b");
}

// The launch code behind pf_cuda_fold_experts, arguments checked: with slots, their check
// (first: num_slots words, all ones), then the A and B kernels for the bank's dtype.
pf_status fold_experts(const DeviceState& dev, const pf_cuda_bank& bank, const int32_t* ids, const float* w, int64_t B,
                       int32_t k, const int32_t* slots, int64_t num_slots, int32_t R, float* a_out, float* b_out,
                       unsigned long long* first, unsigned long long* fault, cudaStream_t st) {
  if (slots) {
    const int64_t want = (B + kThreads - 1) / kThreads, cap = (int64_t)dev.sms * 8;
    const unsigned blocks = (unsigned)(want < cap ? want : cap);
    PF_LAUNCH(fold_slots_first_kernel, blocks, kThreads, 0, st)(slots, B, num_slots, first);
    if (pf_status s = check_launch("fold_experts_slots_first")) return s;
    PF_LAUNCH(fold_slots_kernel, blocks, kThreads, 0, st)(slots, B, num_slots, first, fault);
    if (pf_status s = check_launch("fold_experts_slots")) return s;
  }
  switch (bank.dtype) {
    case PF_F32: return fold<pf::kF32>(bank, ids, w, B, k, slots, num_slots, R, a_out, b_out, fault, st);
    case PF_F16: return fold<pf::kF16>(bank, ids, w, B, k, slots, num_slots, R, a_out, b_out, fault, st);
    default: return fold<pf::kBF16>(bank, ids, w, B, k, slots, num_slots, R, a_out, b_out, fault, st);
  }
}

}  // namespace
}  // namespace cuda
}  // namespace pf

#if !defined(PF_CUDA_EMULATE)  // the entry point needs the CUDA runtime; the emulation test calls fold_experts
extern "C" pf_status pf_cuda_fold_experts(const pf_cuda_bank* bank, const int32_t* ids, const float* w, int64_t B,
                                          int32_t k, const int32_t* slots, int64_t num_slots, int32_t R, float* a_out,
                                          float* b_out, pf_cuda_stream stream) {
  using namespace pf::cuda;
  if (pf_status s = check_bank(bank)) return s;
  if (k < 1 || k > bank->experts)
    return fail(PF_ERR_ARGUMENT, "Expected an integer between 1 and %d for k but received %d", bank->experts, k);
  if (B < 0) return fail(PF_ERR_ARGUMENT, "Expected a request count >= 0 for ids but received %lld", (long long)B);
  if ((int64_t)R < (int64_t)k * bank->rank)
    return fail(PF_ERR_ARGUMENT, "Expected an integer >= %lld (k * rank) for rankCapacity but received %d",
                (long long)k * bank->rank, R);
  if (R > kMaxGridY * kTC)
    return fail(PF_ERR_ARGUMENT, "Expected an integer <= %lld for rankCapacity but received %d",
                (long long)(kMaxGridY * kTC), R);
  if (num_slots < 0 || (!slots && num_slots < B))
    return fail(PF_ERR_ARGUMENT, "Expected at least %lld slots for out but received %lld", (long long)B,
                (long long)num_slots);
  if (B == 0) return PF_OK;
  if (!ids || !w || !a_out || !b_out)
    return fail(PF_ERR_ARGUMENT, "Expected buffers for %s but received null",
                !ids ? "ids" : !w ? "weights" : !a_out ? "out.a" : "out.b");
  const DeviceState* dev = nullptr;
  if (pf_status s = current_device(&dev)) return s;
  if (pf_status s = check_bank_device(*bank, *dev)) return s;
  if (pf_status s = check_array(*dev, ids, (size_t)B * k * 4, "ids")) return s;
  if (pf_status s = check_array(*dev, w, (size_t)B * k * 4, "weights")) return s;
  if (slots)
    if (pf_status s = check_array(*dev, slots, (size_t)B * 4, "slots")) return s;
  if (pf_status s = check_array(*dev, a_out, (size_t)num_slots * bank->din * R * 4, "out.a")) return s;
  if (pf_status s = check_array(*dev, b_out, (size_t)num_slots * R * bank->dout * 4, "out.b")) return s;

  const cudaStream_t st = to_cuda(stream);
  Faults faults(*dev, st);
  if (pf_status s = faults.begin()) return s;
  Scratch scratch(*dev, st);
  void* first = nullptr;
  if (slots) {
    if (pf_status s = scratch.alloc((size_t)num_slots * 8, &first)) return s;
    if (cudaError_t e = cudaMemsetAsync(first, 0xff, (size_t)num_slots * 8, st)) return cuda_fail(e, "cudaMemsetAsync");
  }
  if (pf_status s = fold_experts(*dev, *bank, ids, w, B, k, slots, num_slots, R, a_out, b_out,
                                 static_cast<unsigned long long*>(first), faults.word(), st))
    return s;
  OpContext ctx{"pf_cuda_fold_experts"};
  ctx.ids = ids;
  ctx.weights = w;
  ctx.slots = slots;
  ctx.experts = bank->experts;
  ctx.num_slots = num_slots;
  return faults.finish(ctx);
}
#endif
