// topk_softmax on CUDA: fused softmax + top-k, rows packed into warps.
//
//   logits [T, E] f32  ->  ids [T, k] i32, weights [T, k] f32      (maths: personafuse.h)
//
// A row belongs to a group of G consecutive lanes (G a power of two, 1..32, chosen from E so
// that each lane holds at most 8 values, or up to 32 when E > 256); a warp holds 32 / G rows.
// Lane g of a group holds experts g, g + G, g + 2G, ... in registers (VMAX of them at most:
// a register capacity, not a dimension; E itself is a run-time value, any 1 <= E <= 1024).
//   max and Σ exp(l - max) by group butterflies;
//   k rounds: each lane offers its best not-yet-taken candidate (lane_best), the group keeps
//   the best (group_best: larger logit, ties to the lower id, as on the CPU), its owner marks
//   it taken; lane 0 writes id and p = exp(l - max) / Σ.
//   renormalise: weights /= Σ of the k kept p (summed in j order, as on the CPU).
// A row with NaN or +Inf, or no finite value, gets ids -1 and weights 0, and records a fault.
#include <math.h>

#include "runtime.cuh"
#include "warp.cuh"

namespace pf {
namespace cuda {
namespace {

constexpr int kMaxExperts = 1024;
constexpr int kWarps = 4;

template <int VMAX>
__global__ void __launch_bounds__(kWarps * 32) topk_softmax_kernel(const float* __restrict__ logits, int64_t T,
                                                                    int32_t E, int32_t k, int renorm, int G,
                                                                    int32_t* __restrict__ ids,
                                                                    float* __restrict__ weights,
                                                                    unsigned long long* fault) {
  const int lane = threadIdx.x & 31;
  const int g = lane & (G - 1);
  const unsigned mask = G == 32 ? kFullMask : (((1u << G) - 1u) << (lane & ~(G - 1)));
  const int64_t rows_per_block = (int64_t)blockDim.x / G;
  const int64_t row = (int64_t)blockIdx.x * rows_per_block + threadIdx.x / G;
  if (row >= T) return;  // whole groups leave together

  const float* l = logits + row * E;
  const int n = g < E ? (E - 1 - g) / G + 1 : 0;  // values this lane holds
  float vals[VMAX];
  uint32_t taken = 0;
  bool bad = false;
  float m = -INFINITY;
#pragma unroll
  for (int v = 0; v < VMAX; ++v) {
    vals[v] = -INFINITY;
    if (v < n) {
      vals[v] = l[g + v * G];
      bad |= isnan(vals[v]) || vals[v] == INFINITY;
      m = combine_max(m, bad ? m : vals[v]);
    }
  }
  bad = __any_sync(mask, bad);
  m = group_max(m, mask, G);
  if (bad || m == -INFINITY) {
    for (int j = g; j < k; j += G) {
      ids[row * k + j] = -1;
      weights[row * k + j] = 0.0f;
    }
    if (g == 0) record_fault(fault, kFaultLogits, row);
    return;
  }
  float sum = 0.0f;
#pragma unroll
  for (int v = 0; v < VMAX; ++v)
    if (v < n) sum += expf(vals[v] - m);
  sum = group_sum(sum, mask, G);

  float kept = 0.0f;
  for (int j = 0; j < k; ++j) {
    float bv;
    int32_t bi;
    lane_best<VMAX>(vals, taken, n, g, G, &bv, &bi);
    group_best(&bv, &bi, mask, G);
    if (bi % G == g) taken |= 1u << (bi / G);
    const float p = expf(bv - m) / sum;
    kept += p;
    if (g == 0) {
      ids[row * k + j] = bi;
      weights[row * k + j] = p;
    }
  }
  if (renorm) {
    __syncwarp(mask);  // lane 0's stores are visible to its group from here
    for (int j = g; j < k; j += G) weights[row * k + j] /= kept;
  }
}

template <int VMAX>
pf_status launch(const float* logits, int64_t T, int32_t E, int32_t k, int renorm, int G, int32_t* ids,
                 float* weights, unsigned long long* fault, cudaStream_t stream) {
  const int64_t rows_per_block = kWarps * 32 / G;
  const int64_t blocks = (T + rows_per_block - 1) / rows_per_block;
  if (blocks > kMaxGridX)
    return fail(PF_ERR_ARGUMENT, "Expected at most %lld rows for logits but received %lld",
                (long long)(kMaxGridX * rows_per_block), (long long)T);
  PF_LAUNCH(topk_softmax_kernel<VMAX>, (unsigned)blocks, kWarps * 32, 0, stream)(logits, T, E, k, renorm, G, ids,
                                                                               weights, fault);
  return check_launch("topk_softmax");
}

// The launch code behind pf_cuda_topk_softmax, arguments checked: the lane-group width and the
// register capacity from E, then one kernel over the rows.
pf_status topk_softmax(const float* logits, int64_t T, int32_t E, int32_t k, bool renorm, int32_t* ids, float* weights,
                       unsigned long long* fault, cudaStream_t st) {
  const int G = pf::topk_group_lanes(E);
  const int per_lane = (E + G - 1) / G;
  if (per_lane <= 8) return launch<8>(logits, T, E, k, renorm, G, ids, weights, fault, st);
  if (per_lane <= 16) return launch<16>(logits, T, E, k, renorm, G, ids, weights, fault, st);
  return launch<32>(logits, T, E, k, renorm, G, ids, weights, fault, st);
}

}  // namespace
}  // namespace cuda
}  // namespace pf

#if !defined(PF_CUDA_EMULATE)  // the entry point needs the CUDA runtime; the emulation test calls topk_softmax
extern "C" pf_status pf_cuda_topk_softmax(const float* logits, int64_t T, int32_t E, int32_t k, int renormalize,
                                          int32_t* ids, float* weights, int64_t* bad_row, pf_cuda_stream stream) {
  using namespace pf::cuda;
  if (bad_row) *bad_row = -1;
  if (E < 1 || E > kMaxExperts)
    return fail(PF_ERR_ARGUMENT, "Expected an integer between 1 and %d for experts but received %d", kMaxExperts, E);
  if (k < 1 || k > E) return fail(PF_ERR_ARGUMENT, "Expected an integer between 1 and %d for k but received %d", E, k);
  if (T < 0) return fail(PF_ERR_ARGUMENT, "Expected a row count >= 0 for logits but received %lld", (long long)T);
  if (T == 0) return PF_OK;
  if (!logits || !ids || !weights)
    return fail(PF_ERR_ARGUMENT, "Expected buffers for %s but received null",
                !logits ? "logits" : !ids ? "ids" : "weights");
  const DeviceState* dev = nullptr;
  if (pf_status s = current_device(&dev)) return s;
  if (pf_status s = check_array(*dev, logits, (size_t)T * E * 4, "logits")) return s;
  if (pf_status s = check_array(*dev, ids, (size_t)T * k * 4, "ids")) return s;
  if (pf_status s = check_array(*dev, weights, (size_t)T * k * 4, "weights")) return s;

  const cudaStream_t st = to_cuda(stream);
  Faults faults(*dev, st);
  if (pf_status s = faults.begin()) return s;
  if (pf_status s = topk_softmax(logits, T, E, k, renormalize != 0, ids, weights, faults.word(), st)) return s;
  OpContext ctx{"pf_cuda_topk_softmax"};
  ctx.bad_row = bad_row;
  return faults.finish(ctx);
}
#endif
