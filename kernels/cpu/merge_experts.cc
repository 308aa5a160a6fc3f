// merge_experts: a fixed mix compiled into the base weight, in place.
//
//   ids [n], w [n], c_j = w[j] * s[e_j]
//   in_out  W [din, dout]:  W[i, :] += Σ_j c_j Σ_q A_e[q, i] · B_e[:, q]ᵀ     (W' = W + Σ c (B A)ᵀ)
//   out_in  W [dout, din]:  W[o, :] += Σ_j c_j Σ_q B_e[o, q] · A_e[q, :]      (W' = W + Σ c  B A)
// Both are gemv_acc over W's rows, four rows per pass sharing each weight load.
#include <string.h>

#include <algorithm>
#include <vector>

#include "bank.h"
#include "simd/ops.h"
#include "status.h"
#include "thread_pool.h"

namespace {
constexpr int kRows = 4;
constexpr int64_t kRowsPerTask = 64;
}  // namespace

extern "C" pf_status pf_merge_experts(const pf_bank* bank, const int32_t* ids, const float* w,
                                      int32_t n, float* W, pf_layout layout) {
  using namespace pf;
  if (pf_status s = check_bank(bank)) return s;
  if (n < 0) return fail(PF_ERR_ARGUMENT, "Expected a count >= 0 for ids but received %d", n);
  if (layout != PF_LAYOUT_IN_OUT && layout != PF_LAYOUT_OUT_IN)
    return fail(PF_ERR_ARGUMENT, "Expected one of in_out, out_in for layout but received %d", (int)layout);
  if (n == 0) return PF_OK;
  if (!ids || !w || !W)
    return fail(PF_ERR_ARGUMENT, "Expected buffers for %s but received null", !ids ? "ids" : !w ? "weights" : "w");
  if (pf_status s = check_ids(ids, n, bank->experts, "ids")) return s;
  if (pf_status s = check_finite(w, n, "weights")) return s;

  const SimdOps& ops = simd();
  const pf_dtype dt = bank->dtype;
  const int64_t din = bank->din, dout = bank->dout, rank = bank->rank;
  const bool in_out = layout == PF_LAYOUT_IN_OUT;
  const int64_t rows = in_out ? din : dout, cols = in_out ? dout : din;
  const int64_t ldg = (int64_t)n * rank;
  std::vector<float> a_rows;       // out_in only: A_e as f32 rows [r_e, din] per slot j
  std::vector<float> gbuf;         // per task: kRows x (n * rank) gates
  const int64_t ntasks = (rows + kRowsPerTask - 1) / kRowsPerTask;
  try {
    gbuf.assign((size_t)ntasks * kRows * ldg, 0.0f);
    if (!in_out) {
      a_rows.assign((size_t)n * rank * din, 0.0f);
      for (int32_t j = 0; j < n; ++j) {
        if (ids[j] < 0) continue;
        const int64_t re = bank->ranks[ids[j]];
        const void* at = bank->at_of(ids[j]);
        for (int64_t i = 0; i < din; ++i)
          for (int64_t q = 0; q < re; ++q)
            a_rows[(j * rank + q) * din + i] = load_as_f32(dt, at, i * re + q);
      }
    }
  } catch (const std::bad_alloc&) {
    return fail(PF_ERR_MEMORY, "Could not allocate merge scratch for %d experts", n);
  }

  parallel_for(ntasks, rows * cols * 8, [&](int64_t task) {
    float* g = gbuf.data() + task * kRows * ldg;
    const int64_t r1 = std::min(rows, (task + 1) * kRowsPerTask);
    for (int64_t r0 = task * kRowsPerTask; r0 < r1; r0 += kRows) {
      const int nt = (int)std::min<int64_t>(kRows, r1 - r0);
      for (int32_t j = 0; j < n; ++j) {
        const int32_t e = ids[j];
        if (e < 0) continue;
        const int64_t re = bank->ranks[e];
        const float c = w[j] * bank->scales[e];
        // gates: in_out uses A_e[q, row] = at[row, q]; out_in uses B_e[row, q] = bt[q, row]
        for (int t = 0; t < nt; ++t)
          for (int64_t q = 0; q < re; ++q)
            g[t * ldg + j * rank + q] =
                c * (in_out ? load_as_f32(dt, bank->at_of(e), (r0 + t) * re + q)
                            : load_as_f32(dt, bank->bt_of(e), q * dout + r0 + t));
      }
      for (int32_t j = 0; j < n; ++j) {
        const int32_t e = ids[j];
        if (e < 0 || bank->ranks[e] == 0) continue;
        if (in_out)
          ops.gemv_acc(dt, bank->bt_of(e), dout, bank->ranks[e], g + j * rank, ldg, nt,
                       W + r0 * cols, cols, cols);
        else
          ops.gemv_acc(PF_F32, a_rows.data() + j * rank * din, din, bank->ranks[e], g + j * rank,
                       ldg, nt, W + r0 * cols, cols, cols);
      }
    }
  });
  return PF_OK;
}
