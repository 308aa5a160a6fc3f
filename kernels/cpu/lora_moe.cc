// lora_moe: the SGMV/BGMV operation, fused over a token's k experts.
//
//   x [T, din], ids [T, k], w [T, k], y [T, dout] (accumulated into)
//   for t < T, j < k, e = ids[t, j] >= 0:
//     h = A_e[:r_e, :] · x[t, :]                 # shrink, [r_e]   (stays in a small L1 buffer)
//     y[t, :] += (w[t, j] * s[e]) * B_e[:, :r_e] · h   # expand, [dout]
//
// Work split (results identical either way, see simd/ops.h):
//   many tokens: tasks are token tiles; each tile shrinks then expands its own tokens.
//   few tokens (decode): shrink tasks per (token group, slot), then expand tasks per dout
//   chunk, so two cores share even a single token.
// Consecutive tokens with the same ids row (one request's prefill) form groups of up to 4
// that share each weight load.
#include <string.h>

#include <algorithm>
#include <vector>

#include "bank.h"
#include "simd/ops.h"
#include "status.h"
#include "thread_pool.h"

namespace pf {
namespace {

constexpr int kGroup = 4;          // tokens sharing one pass over an expert's weights
constexpr int64_t kOBlock = 512;   // dout columns kept hot in L1 while the k experts add in

struct Group {
  int64_t t0;
  int nt;
};

std::vector<Group> make_groups(const int32_t* ids, int64_t t_begin, int64_t t_end, int32_t k) {
  std::vector<Group> groups;
  for (int64_t t = t_begin; t < t_end;) {
    int nt = 1;
    while (nt < kGroup && t + nt < t_end &&
           memcmp(ids + (t + nt) * k, ids + t * k, sizeof(int32_t) * k) == 0)
      ++nt;
    groups.push_back({t, nt});
    t += nt;
  }
  return groups;
}

struct Moe {
  const pf_bank& bank;
  const SimdOps& ops;
  const float* x;
  const int32_t* ids;
  const float* w;
  int32_t k;
  float* y;

  // g[t, j*rank + q] = w[t,j] * s[e] * (A_e · x[t])[q] for the group's tokens, one slot j.
  // hp: scratch of kGroup * rank floats.
  void shrink(const Group& grp, int32_t j, float* g, int64_t ldg, float* hp) const {
    const int32_t e = ids[grp.t0 * k + j];
    if (e < 0) return;
    const int32_t re = bank.ranks[e];
    memset(hp, 0, sizeof(float) * grp.nt * re);
    ops.gemv_acc(bank.dtype, bank.at_of(e), re, bank.din, x + grp.t0 * bank.din, bank.din, grp.nt,
                 hp, re, re);
    for (int t = 0; t < grp.nt; ++t) {
      const float c = w[(grp.t0 + t) * k + j] * bank.scales[e];
      for (int32_t q = 0; q < re; ++q) g[t * ldg + j * bank.rank + q] = c * hp[t * re + q];
    }
  }

  // y[t, o0:o1] += Σ_j expand for the group's tokens; g as written by shrink.
  void expand(const Group& grp, const float* g, int64_t ldg, int64_t o0, int64_t o1) const {
    for (int64_t ob = o0; ob < o1; ob += kOBlock) {
      const int64_t n = std::min(kOBlock, o1 - ob);
      for (int32_t j = 0; j < k; ++j) {
        const int32_t e = ids[grp.t0 * k + j];
        if (e < 0 || bank.ranks[e] == 0) continue;
        const uint8_t* bt = static_cast<const uint8_t*>(bank.bt_of(e)) + ob * bank.elem();
        ops.gemv_acc(bank.dtype, bt, bank.dout, bank.ranks[e], g + j * bank.rank, ldg, grp.nt,
                     y + grp.t0 * bank.dout + ob, bank.dout, n);
      }
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

  const Moe moe{*bank, simd(), x, ids, w, k, y};
  const int64_t din = bank->din, dout = bank->dout, kr = (int64_t)k * bank->rank;
  const int64_t weight_bytes = (int64_t)k * bank->rank * (din + dout) * bank->elem();
  const int64_t bytes = T * (din + 2 * dout) * 4 + weight_bytes;
  const int threads = num_threads();

  try {
    // Scratch is allocated here, never inside a task (a task must not throw).
    const int64_t hsize = (int64_t)kGroup * bank->rank;
    if (T >= 4 * kGroup * threads) {
      // Token tiles: shrink and expand stay within one task; g holds one group at a time.
      const int64_t tile = std::max<int64_t>(kGroup, std::min<int64_t>(64, T / (4 * threads)) / kGroup * kGroup);
      const int64_t ntiles = (T + tile - 1) / tile;
      std::vector<Group> groups;
      std::vector<int64_t> first(ntiles + 1);
      for (int64_t i = 0; i < ntiles; ++i) {
        first[i] = (int64_t)groups.size();
        const std::vector<Group> part = make_groups(ids, i * tile, std::min(T, (i + 1) * tile), k);
        groups.insert(groups.end(), part.begin(), part.end());
      }
      first[ntiles] = (int64_t)groups.size();
      std::vector<float> scratch((size_t)ntiles * (kGroup * kr + hsize), 0.0f);
      parallel_for(ntiles, bytes, [&](int64_t i) {
        float* g = scratch.data() + i * (kGroup * kr + hsize);
        for (int64_t gi = first[i]; gi < first[i + 1]; ++gi) {
          for (int32_t j = 0; j < k; ++j) moe.shrink(groups[gi], j, g, kr, g + kGroup * kr);
          moe.expand(groups[gi], g, kr, 0, dout);
        }
      });
    } else {
      // Decode: shrink per (group, slot), then expand per dout chunk across all groups.
      const std::vector<Group> groups = make_groups(ids, 0, T, k);
      const int64_t ntasks = (int64_t)groups.size() * k;
      std::vector<float> g((size_t)T * kr, 0.0f), h((size_t)ntasks * hsize);
      parallel_for(ntasks, weight_bytes, [&](int64_t task) {
        const Group& grp = groups[task / k];
        moe.shrink(grp, (int32_t)(task % k), g.data() + grp.t0 * kr, kr, h.data() + task * hsize);
      });
      const int64_t chunk = std::max<int64_t>(64, (dout / (2 * threads) + 63) / 64 * 64);
      parallel_for((dout + chunk - 1) / chunk, bytes, [&](int64_t c) {
        const int64_t o0 = c * chunk, o1 = std::min(dout, o0 + chunk);
        for (const Group& grp : groups) moe.expand(grp, g.data() + grp.t0 * kr, kr, o0, o1);
      });
    }
  } catch (const std::bad_alloc&) {
    return fail(PF_ERR_MEMORY, "Could not allocate lora_moe scratch for %lld tokens", (long long)T);
  }
  return PF_OK;
}
