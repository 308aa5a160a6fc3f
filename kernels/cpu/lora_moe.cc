// lora_moe: the SGMV/BGMV operation, fused over a token's k experts.
//
//   x [T, din], ids [T, k], w [T, k], y [T, dout] (accumulated into); kr = k * rank
//   shrink, for t < T, j < k, e = ids[t, j] >= 0:
//     g[t, j*rank : j*rank + r_e] = w[t,j] * s[e] * (A_e[:r_e, :] · x[t, :])     # [r_e], scratch
//   expand, for t < T, j = 0 .. k-1 in order, e = ids[t, j] >= 0:
//     y[t, :] += B_e[:, :r_e] · g[t, j*rank : j*rank + r_e]                      # [dout]
//
// Schedule (SGMV): the (token, slot) pairs are counting-sorted by (expert, slot), so an
// expert's weights are loaded once per block of up to 12 tokens (simd/moe_template.inl)
// instead of once per token, whether the tokens are one request's prefill or a mixed batch.
//   1. shrink tasks: runs of up to kRun pairs of one expert -> g.
//   2. expand tasks: column blocks of y; a task walks chunks of 256 tokens and in each chunk
//      slot j = 0 .. k-1 and, per slot, the experts' token lists, so every y element takes
//      its k experts in slot order while the chunk's y block stays in cache.
// Every output element is computed by the same chain of operations whatever the thread
// count, the task split or the token blocking (simd/ops.h): results are bit-identical.
#include <string.h>

#include <algorithm>
#include <vector>

#include "bank.h"
#include "simd/ops.h"
#include "status.h"
#include "thread_pool.h"

namespace pf {
namespace {

constexpr int kRun = 24;             // pairs per kernel call (a multiple of the 12-token block)
constexpr int64_t kTokenChunk = 256; // tokens per expand sweep: [256, 256] of y stays in L2
constexpr int64_t kColBlock = 256;   // widest y column block: [T, 256] of y stays in L2
constexpr int64_t kPanelMinTokens = 12;  // tokens of one expert that pay for widening its B

// The (token, slot) pairs with an expert, sorted by key = e * k + j, tokens ascending.
//   pairs[first[key] .. first[key + 1]) = t * k + j of every pair with ids[t, j] = e.
struct Routing {
  std::vector<int64_t> pairs;
  std::vector<int64_t> first;  // [E * k + 1]
};

Routing sort_pairs(const int32_t* ids, int64_t T, int32_t k, int32_t E) {
  Routing r;
  r.first.assign((size_t)E * k + 1, 0);
  for (int64_t p = 0; p < T * k; ++p)
    if (ids[p] >= 0) ++r.first[(size_t)ids[p] * k + p % k + 1];
  for (size_t key = 1; key < r.first.size(); ++key) r.first[key] += r.first[key - 1];
  r.pairs.resize((size_t)r.first.back());
  std::vector<int64_t> next(r.first.begin(), r.first.end() - 1);
  for (int64_t p = 0; p < T * k; ++p)
    if (ids[p] >= 0) r.pairs[(size_t)next[(size_t)ids[p] * k + p % k]++] = p;
  return r;
}

struct ShrinkTask {
  int32_t e;
  int64_t p0, p1;  // a run of pairs[] of expert e
};

struct Moe {
  const pf_bank& bank;
  const SimdOps& ops;
  const float* x;
  const float* w;
  int32_t k;
  float* y;
  float* g;  // [T, kr]
  int64_t kr;
  const Routing& routing;

  // g rows of a run of pairs of one expert: shrink, then the gate w * s.
  void shrink(const ShrinkTask& task) const {
    const int32_t e = task.e;
    const int64_t re = bank.ranks[e];
    const float* xp[kRun];
    float* gp[kRun];
    const int n = (int)(task.p1 - task.p0);
    for (int i = 0; i < n; ++i) {
      const int64_t p = routing.pairs[task.p0 + i], t = p / k, j = p % k;
      xp[i] = x + t * bank.din;
      gp[i] = g + t * kr + j * bank.rank;
    }
    ops.shrink(bank.dtype, bank.at_of(e), re, bank.din, xp, n, gp);
    for (int i = 0; i < n; ++i) {
      const float c = w[routing.pairs[task.p0 + i]] * bank.scales[e];
      for (int64_t q = 0; q < re; ++q) gp[i][q] *= c;
    }
  }

  // y[:, o0:o1) += the expand of every pair: token chunk by token chunk, and within a chunk
  // slot by slot, so each y element still takes its k experts in slot order while the chunk's
  // y block stays in cache across the k slots. cursor: scratch of E * k; panel: see expand_run.
  void expand(int64_t o0, int64_t o1, int64_t T, int64_t* cursor, float* panel) const {
    const int64_t nkeys = (int64_t)bank.experts * k;
    for (int64_t key = 0; key < nkeys; ++key) cursor[key] = routing.first[key];
    for (int64_t t1 = kTokenChunk; t1 - kTokenChunk < T; t1 += kTokenChunk)
      for (int32_t j = 0; j < k; ++j)
        for (int32_t e = 0; e < bank.experts; ++e) {
          const int64_t key = (int64_t)e * k + j;
          int64_t last = cursor[key];
          while (last < routing.first[key + 1] && routing.pairs[last] / k < t1) ++last;
          expand_run(e, j, cursor[key], last, o0, o1, panel);
          cursor[key] = last;
        }
  }

  // y[t, o0:o1) += B_e[o0:o1, :r_e] · g[t, j] for the pairs [first, last) of (e, j). panel:
  // scratch of rank * (o1 - o0) floats, where an f16/bf16 expert's columns are widened once
  // for all those tokens (exact, so the bits are those of the direct path; it keeps
  // vcvtph2ps out of the FMA loop).
  void expand_run(int32_t e, int32_t j, int64_t first, int64_t last, int64_t o0, int64_t o1,
                  float* panel) const {
    const int64_t re = bank.ranks[e];
    if (re == 0 || first == last) return;
    // bt [re, ldb] from column o0: the bank itself, or the widened panel.
    const void* bt = static_cast<const uint8_t*>(bank.bt_of(e)) + o0 * bank.elem();
    pf_dtype dt = bank.dtype;
    int64_t ldb = bank.dout;
    if (dt != PF_F32 && last - first >= kPanelMinTokens) {
      ops.convert_rows(dt, bt, bank.dout, 1.0f, panel, o1 - o0, re, o1 - o0);
      bt = panel;
      dt = PF_F32;
      ldb = o1 - o0;
    }
    const float* gp[kRun];
    float* yp[kRun];
    for (int64_t p0 = first; p0 < last; p0 += kRun) {
      const int n = (int)std::min<int64_t>(kRun, last - p0);
      for (int i = 0; i < n; ++i) {
        const int64_t t = routing.pairs[p0 + i] / k;
        gp[i] = g + t * kr + j * bank.rank;
        yp[i] = y + t * bank.dout + o0;
      }
      ops.expand(dt, bt, ldb, re, gp, n, yp, 0, o1 - o0);
    }
  }
};

}  // namespace
}  // namespace pf

extern "C" pf_status pf_lora_moe(const pf_bank* bank, const float* x, int64_t T, const int32_t* ids,
                                 const float* w, int32_t k, float* y) {
  using namespace pf;
  if (pf_status s = check_bank(bank)) return s;
  if (T < 0) return fail(PF_ERR_ARGUMENT, "Expected a token count >= 0 for x but received %lld", (long long)T);
  if (k < 1 || k > bank->experts)
    return fail(PF_ERR_ARGUMENT, "Expected an integer between 1 and %d for k but received %d",
                bank->experts, k);
  if (T == 0) return PF_OK;
  if (!x || !ids || !w || !y)
    return fail(PF_ERR_ARGUMENT, "Expected buffers for %s but received null",
                !x ? "x" : !ids ? "ids" : !w ? "weights" : "y");
  if (pf_status s = check_ids(ids, T * k, bank->experts, "ids")) return s;
  if (pf_status s = check_finite(w, T * k, "weights")) return s;

  const int64_t din = bank->din, dout = bank->dout, kr = (int64_t)k * bank->rank;
  const int threads = num_threads();
  try {
    // Scratch is allocated here, never inside a task (a task must not throw).
    const Routing routing = sort_pairs(ids, T, k, bank->experts);
    std::vector<ShrinkTask> shrinks;
    int64_t a_bytes = 0, b_bytes = 0;  // the used experts' weights, for the thread decision
    for (int32_t e = 0; e < bank->experts; ++e) {
      const int64_t p0 = routing.first[(size_t)e * k], p1 = routing.first[(size_t)(e + 1) * k];
      if (p0 == p1 || bank->ranks[e] == 0) continue;
      a_bytes += (int64_t)bank->ranks[e] * din * bank->elem();
      b_bytes += (int64_t)bank->ranks[e] * dout * bank->elem();
      for (int64_t p = p0; p < p1; p += kRun) shrinks.push_back({e, p, std::min<int64_t>(p1, p + kRun)});
    }
    // Runs in token order (expert order within a token range): the experts of one request
    // then read the same x rows while they are still in L2, instead of x once per expert.
    std::stable_sort(shrinks.begin(), shrinks.end(), [&](const ShrinkTask& a, const ShrinkTask& b) {
      return routing.pairs[a.p0] / k < routing.pairs[b.p0] / k;
    });
    std::vector<float> g((size_t)(T * kr));
    const Moe moe{*bank, simd(), x, w, k, y, g.data(), kr, routing};

    parallel_for((int64_t)shrinks.size(), a_bytes + T * din * 4,
                 [&](int64_t i) { moe.shrink(shrinks[i]); });

    // Column blocks: ~2 per thread, at most kColBlock wide, multiples of 64 columns.
    const int64_t want = (dout + 2 * threads - 1) / (2 * threads);
    const int64_t cols = std::min<int64_t>(kColBlock, std::max<int64_t>(64, (want + 63) / 64 * 64));
    const int64_t ncols = (dout + cols - 1) / cols;
    std::vector<float> panels((size_t)(bank->dtype == PF_F32 ? 0 : ncols * bank->rank * cols));
    std::vector<int64_t> cursors((size_t)(ncols * bank->experts * k));
    parallel_for(ncols, b_bytes + T * dout * 8, [&](int64_t c) {
      moe.expand(c * cols, std::min(dout, (c + 1) * cols), T, cursors.data() + c * bank->experts * k,
                 panels.data() + c * bank->rank * cols);
    });
  } catch (const std::bad_alloc&) {
    return fail(PF_ERR_MEMORY, "Could not allocate lora_moe scratch for %lld tokens", (long long)T);
  }
  return PF_OK;
}
