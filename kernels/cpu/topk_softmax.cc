// topk_softmax: routing probabilities and the k best experts of each row.
//
//   logits [T, E] f32  ->  ids [T, k] i32, weights [T, k] f32
//   for t:
//     m = max_e logits[t, e];  p_e = exp(logits[t, e] - m) / Σ_e' exp(logits[t, e'] - m)
//     ids[t, :] = the k experts with the largest logits (larger first, ties to lower id)
//     weights[t, j] = p_{ids[t, j]}            (/ Σ_j p_{ids[t, j]} when renormalize)
// Selection compares logits, not rounded probabilities, so ties are exact.
#include <math.h>

#include <algorithm>
#include <vector>

#include "../common/numeric.h"
#include "simd/ops.h"
#include "status.h"
#include "thread_pool.h"

namespace pf {
namespace {

constexpr int32_t kMaxExperts = 1024;
constexpr int kSimdMaxK = 32;  // k rounds of a vector arg-max up to here, then partial sort

// Weights of one row whose ids are chosen; m and sum from SimdOps::softmax_rows.
void row_weights(const float* l, int32_t k, bool renorm, float m, float sum, const int32_t* ids,
                 float* w) {
  float kept = 0.0f;
  for (int32_t j = 0; j < k; ++j) {
    w[j] = expf(l[ids[j]] - m) / sum;
    kept += w[j];
  }
  if (renorm)
    for (int32_t j = 0; j < k; ++j) w[j] /= kept;
}

// The k best of one row for k > kSimdMaxK.
void sort_row(const float* l, int32_t E, int32_t k, int32_t* ids, int32_t* order) {
  for (int32_t e = 0; e < E; ++e) order[e] = e;
  std::partial_sort(order, order + k, order + E,
                    [l](int32_t a, int32_t b) { return topk_before(l[a], a, l[b], b); });
  for (int32_t j = 0; j < k; ++j) ids[j] = order[j];
}

}  // namespace
}  // namespace pf

extern "C" pf_status pf_topk_softmax(const float* logits, int64_t T, int32_t E, int32_t k,
                                     int renormalize, int32_t* ids, float* weights,
                                     int64_t* bad_row) {
  using pf::fail;
  if (bad_row) *bad_row = -1;
  if (E < 1 || E > pf::kMaxExperts)
    return fail(PF_ERR_ARGUMENT, "Expected an integer between 1 and %d for experts but received %d",
                pf::kMaxExperts, E);
  if (k < 1 || k > E)
    return fail(PF_ERR_ARGUMENT, "Expected an integer between 1 and %d for k but received %d", E, k);
  if (T < 0) return fail(PF_ERR_ARGUMENT, "Expected a row count >= 0 for logits but received %lld", (long long)T);
  if (T == 0) return PF_OK;
  if (!logits || !ids || !weights)
    return fail(PF_ERR_ARGUMENT, "Expected buffers for %s but received null",
                !logits ? "logits" : !ids ? "ids" : "weights");

  // Rows in blocks: each block has its own scratch; the first failing row is reported.
  constexpr int64_t block = 64;
  const int64_t nblocks = (T + block - 1) / block;
  std::vector<int64_t> bad(nblocks, -1);
  // Per block: row maxima and sums (checking the rows), then the ids, then the weights.
  const pf::SimdOps& ops = pf::simd();
  pf::parallel_for(nblocks, T * E * 4, [&](int64_t b) {
    float m[block], sum[block];
    int32_t scratch[pf::kMaxExperts + 16];
    const int64_t t0 = b * block, n = std::min(T, t0 + block) - t0;
    const float* l = logits + t0 * E;
    ops.softmax_rows(l, n, E, m, sum);
    for (int64_t t = 0; t < n; ++t)
      if (isnan(m[t])) {
        bad[b] = t0 + t;
        return;
      }
    if (k <= pf::kSimdMaxK) ops.topk_rows(l, n, E, k, ids + t0 * k, scratch);
    else
      for (int64_t t = 0; t < n; ++t) pf::sort_row(l + t * E, E, k, ids + (t0 + t) * k, scratch);
    for (int64_t t = 0; t < n; ++t)
      pf::row_weights(l + t * E, k, renormalize != 0, m[t], sum[t], ids + (t0 + t) * k,
                      weights + (t0 + t) * k);
  });
  for (int64_t b : bad)
    if (b >= 0) {
      if (bad_row) *bad_row = b;
      return fail(PF_ERR_VALUE,
                  "Expected finite numbers (or -Infinity) with at least one finite value in each "
                  "row for logits but received a NaN or +Infinity or no finite value in row %lld",
                  (long long)b);
    }
  return PF_OK;
}
