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
#include "status.h"
#include "thread_pool.h"

namespace pf {
namespace {

constexpr int32_t kMaxExperts = 1024;
constexpr int kInsertMaxK = 32;  // above this, partial sort beats insertion

// Returns false when the row holds NaN or +Inf, or no finite value at all.
bool route_row(const float* l, int32_t E, int32_t k, bool renorm, int32_t* ids, float* w,
               float* vals, int32_t* order) {
  float m = -INFINITY;
  for (int32_t e = 0; e < E; ++e) {
    if (isnan(l[e]) || l[e] == INFINITY) return false;
    m = l[e] > m ? l[e] : m;
  }
  if (m == -INFINITY) return false;
  float sum = 0.0f;
  for (int32_t e = 0; e < E; ++e) sum += expf(l[e] - m);
  if (k <= kInsertMaxK) {
    int n = 0;
    for (int32_t e = 0; e < E; ++e) n = topk_insert(vals, ids, n, k, l[e], e);
  } else {
    for (int32_t e = 0; e < E; ++e) order[e] = e;
    std::partial_sort(order, order + k, order + E,
                      [l](int32_t a, int32_t b) { return topk_before(l[a], a, l[b], b); });
    for (int32_t j = 0; j < k; ++j) ids[j] = order[j];
  }
  float kept = 0.0f;
  for (int32_t j = 0; j < k; ++j) {
    w[j] = expf(l[ids[j]] - m) / sum;
    kept += w[j];
  }
  if (renorm)
    for (int32_t j = 0; j < k; ++j) w[j] /= kept;
  return true;
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
  const int64_t block = 64;
  const int64_t nblocks = (T + block - 1) / block;
  std::vector<int64_t> bad(nblocks, -1);
  pf::parallel_for(nblocks, T * E * 4, [&](int64_t b) {
    float vals[pf::kInsertMaxK];
    int32_t order[pf::kMaxExperts];
    const int64_t t1 = std::min(T, (b + 1) * block);
    for (int64_t t = b * block; t < t1; ++t)
      if (!pf::route_row(logits + t * E, E, k, renormalize != 0, ids + t * k, weights + t * k,
                         vals, order)) {
        bad[b] = t;
        return;
      }
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
