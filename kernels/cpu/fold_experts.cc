// fold_experts: each request's mix written as one rank-R adapter in its batch slot.
//
//   ids [B, k], w [B, k], slots [B];  a_out [S, din, R], b_out [S, R, dout];  R >= k * rank
//   for b < B, s = slots[b], j < k, e = ids[b, j]:
//     a_out[s, :, j*rank + q] = A_e[q, :]            q < r_e      (A_cat = [A_1; ...; A_k]ᵀ)
//     b_out[s, j*rank + q, :] = w[b,j] s[e] B_e[:, q] q < r_e      (B_cat, gates folded in)
//   all other columns of a_out[s] and rows of b_out[s] are zero; other slots are untouched.
// Then x · a_out[s] · b_out[s] = Σ_j w[b,j] s[e] B_e A_e x: the mix as ordinary MatMuls.
// Bandwidth-bound: every byte written once, rows streamed from the packed bank.
#include <string.h>

#include <algorithm>
#include <vector>

#include "bank.h"
#include "simd/ops.h"
#include "status.h"
#include "thread_pool.h"

namespace {

constexpr int64_t kTaskFloats = 16 * 1024;  // ~64 KiB written per task, on either side
constexpr int64_t kParallelBytes = 16 * 1024 * 1024;

struct Fold {
  const pf_bank& bank;
  const pf::SimdOps& ops;
  const int32_t* ids;
  const float* w;
  int32_t k, R;
  float* a_out;
  float* b_out;

  // A_cat rows [i0, i1) of request b into slot s: per slot j one strided block copy
  // a_out[s, i, j*rank + q] = at_e[i, q], then the zero columns.
  void a_rows(int64_t b, int64_t s, int64_t i0, int64_t i1) const {
    const int64_t es = bank.elem(), rank = bank.rank;
    float* block = a_out + (s * bank.din + i0) * R;
    for (int32_t j = 0; j < k; ++j) {
      const int32_t e = ids[b * k + j];
      const int64_t re = e < 0 ? 0 : bank.ranks[e];
      if (re > 0)
        ops.convert_rows(bank.dtype, static_cast<const uint8_t*>(bank.at_of(e)) + i0 * re * es, re,
                         1.0f, block + j * rank, R, i1 - i0, re);
      if (re < rank)
        for (int64_t i = 0; i < i1 - i0; ++i)
          memset(block + i * R + j * rank + re, 0, sizeof(float) * (rank - re));
    }
    if (R > k * rank)
      for (int64_t i = 0; i < i1 - i0; ++i)
        memset(block + i * R + k * rank, 0, sizeof(float) * (R - k * rank));
  }

  // B_cat rows [r0, r1) of request b into slot s.
  void b_rows(int64_t b, int64_t s, int64_t r0, int64_t r1) const {
    const int64_t dout = bank.dout;
    for (int64_t r = r0; r < r1; ++r) {
      float* row = b_out + (s * R + r) * dout;
      const int64_t j = r / bank.rank, q = r % bank.rank;
      const int32_t e = j < k ? ids[b * k + j] : -1;
      if (e < 0 || q >= bank.ranks[e]) {
        memset(row, 0, sizeof(float) * dout);
        continue;
      }
      const uint8_t* bt = static_cast<const uint8_t*>(bank.bt_of(e)) + q * dout * bank.elem();
      ops.convert_scale(bank.dtype, bt, w[b * k + j] * bank.scales[e], row, dout);
    }
  }
};

}  // namespace

extern "C" pf_status pf_fold_experts(const pf_bank* bank, const int32_t* ids, const float* w,
                                     int64_t B, int32_t k, const int32_t* slots,
                                     int64_t num_slots, int32_t R, float* a_out, float* b_out) {
  using namespace pf;
  if (pf_status s = check_bank(bank)) return s;
  if (k < 1 || k > bank->experts)
    return fail(PF_ERR_ARGUMENT, "Expected an integer between 1 and %d for k but received %d",
                bank->experts, k);
  if (B < 0) return fail(PF_ERR_ARGUMENT, "Expected a request count >= 0 for ids but received %lld", (long long)B);
  if ((int64_t)R < (int64_t)k * bank->rank)
    return fail(PF_ERR_ARGUMENT, "Expected an integer >= %lld (k * rank) for rankCapacity but received %d",
                (long long)k * bank->rank, R);
  if (num_slots < 0 || (!slots && num_slots < B))
    return fail(PF_ERR_ARGUMENT, "Expected at least %lld slots for out but received %lld",
                (long long)B, (long long)num_slots);
  if (B == 0) return PF_OK;
  if (!ids || !w || !a_out || !b_out)
    return fail(PF_ERR_ARGUMENT, "Expected buffers for %s but received null",
                !ids ? "ids" : !w ? "weights" : !a_out ? "out.a" : "out.b");
  if (pf_status s = check_ids(ids, B * k, bank->experts, "ids")) return s;
  if (pf_status s = check_finite(w, B * k, "weights")) return s;
  try {
    if (slots) {
      std::vector<bool> used((size_t)num_slots, false);
      for (int64_t b = 0; b < B; ++b) {
        if (slots[b] < 0 || slots[b] >= num_slots)
          return fail(PF_ERR_ARGUMENT,
                      "Expected slot indices between 0 and %lld for slots but received %d at index %lld",
                      (long long)num_slots - 1, slots[b], (long long)b);
        if (used[slots[b]])
          return fail(PF_ERR_ARGUMENT, "Expected distinct slot indices for slots but received %d twice",
                      slots[b]);
        used[slots[b]] = true;
      }
    }
  } catch (const std::bad_alloc&) {
    return fail(PF_ERR_MEMORY, "Could not allocate the slot check for %lld slots", (long long)num_slots);
  }

  const Fold fold{*bank, simd(), ids, w, k, R, a_out, b_out};
  // Tasks of ~64 KiB on both sides, so that even one request splits evenly over the threads
  // (B_cat is only R rows, but each is dout long).
  const int64_t a_per_task = std::max<int64_t>(1, kTaskFloats / R);
  const int64_t b_per_task = std::max<int64_t>(1, kTaskFloats / bank->dout);
  const int64_t a_tasks = (bank->din + a_per_task - 1) / a_per_task;
  const int64_t b_tasks = (R + b_per_task - 1) / b_per_task;
  const int64_t per_req = a_tasks + b_tasks;
  const int64_t bytes = B * (int64_t)R * (bank->din + bank->dout) * 4;
  // A store stream: one core already writes at memcpy speed (which is single-threaded too), so
  // a second one only pays off for large batches; below kParallelBytes it cost 1.1-1.6x on
  // this VM (bench/results/journal-bench.md). Passing 0 bytes keeps parallel_for inline.
  parallel_for(B * per_req, bytes >= kParallelBytes ? bytes : 0, [&](int64_t task) {
    const int64_t b = task / per_req, part = task % per_req;
    const int64_t s = slots ? slots[b] : b;
    if (part < a_tasks) {
      const int64_t i0 = part * a_per_task;
      fold.a_rows(b, s, i0, std::min<int64_t>(bank->din, i0 + a_per_task));
    } else {
      const int64_t r0 = (part - a_tasks) * b_per_task;
      fold.b_rows(b, s, r0, std::min<int64_t>(R, r0 + b_per_task));
    }
  });
  return PF_OK;
}
