// topk_softmax's kernel (topk_softmax.cu) runs on the CPU through the CUDA emulation
// (emu/cuda_emu.h) with its own launch code, against a float64 reference on fresh random logits
// (seed printed; --seed N repeats a run): E from 1 to 1024 over every lane-group width (1 to
// 32 lanes a row) and register capacity (8, 16, 32 values a lane), k from 1 to E, renormalised
// or not, ties and -Infinity, row counts that leave the last block part empty; and rows of NaN,
// +Infinity or no finite value, whose fault (the first such row, as the CPU op reports) and
// outputs (ids -1, weights 0) are checked. Outputs are poisoned (NaN) and guarded by canaries;
// every case runs twice for identical bits.
//
//   g++ -std=c++17 -O2 -U_FORTIFY_SOURCE -DPF_CUDA_EMULATE -I<cuda>/include -Ikernels/include
//       kernels/tests/emu_topk_softmax_test.cc -o emu_topk_softmax_test
// (test/cuda_kernels.test.ts builds and runs it wherever nvcc is installed.)
#include "emu/cuda_emu.h"
// the kernel under test, with its launch code
#include "../cuda/topk_softmax.cu"

#include "emu/harness.h"

namespace {

using namespace pf_test;

struct Run : Outcome {
  std::vector<int32_t> ids;
  std::vector<float> w;
};

Run run(const std::vector<float>& logits, int64_t T, int32_t E, int32_t k, bool renorm) {
  Guarded<float> l(logits);  // a read past the logits reads NaN canaries: a fault, wrong rows
  Guarded<int32_t> ids((size_t)T * k, kPoison);
  Guarded<float> w((size_t)T * k, kPoison);
  Run r;
  r.status = pf::cuda::topk_softmax(l.data(), T, E, k, renorm, ids.data(), w.data(), &r.fault, nullptr);
  r.ids = ids.values();
  r.w = w.values();
  r.guards_ok = ids.guards_ok() && w.guards_ok();
  return r;
}

// A row the op refuses: a NaN or +Infinity, or no finite value.
bool bad_row(const float* l, int32_t E) {
  bool finite = false;
  for (int32_t e = 0; e < E; ++e) {
    if (isnan(l[e]) || l[e] == INFINITY) return true;
    finite |= l[e] != -INFINITY;
  }
  return !finite;
}

// One call against the reference: good rows by topk_reference (ids exact, weights within 2e-6),
// bad rows ids -1 and weights 0, the fault word the first bad row's (none without).
void check(const std::string& name, const std::vector<float>& logits, int64_t T, int32_t E, int32_t k, bool renorm) {
  std::vector<float> good = logits;  // the reference sees zeros for bad rows, then they are set
  std::vector<int64_t> bad;
  for (int64_t t = 0; t < T; ++t)
    if (bad_row(&logits[t * E], E)) bad.push_back(t), std::fill(&good[t * E], &good[t * E] + E, 0.0f);
  std::vector<int32_t> rid;
  std::vector<double> rw;
  topk_reference(good, T, E, k, renorm, &rid, &rw);
  for (int64_t t : bad)
    for (int32_t j = 0; j < k; ++j) rid[t * k + j] = -1, rw[t * k + j] = 0.0;
  const unsigned long long want_fault =
      bad.empty() ? kNoFault : (unsigned long long)pf::cuda::kFaultLogits << 56 | (unsigned long long)bad[0];
  const Run a = run(logits, T, E, k, renorm), b = run(logits, T, E, k, renorm);
  size_t id_diff = 0;
  double werr = 0;
  for (size_t i = 0; i < rid.size(); ++i) {
    id_diff += a.ids[i] != rid[i];
    werr = std::max(werr, isnan(a.w[i]) ? INFINITY : fabs(a.w[i] - rw[i]));
  }
  const bool same = same_bits(a.ids, b.ids) && same_bits(a.w, b.w) && a.fault == b.fault;
  report(name,
         a.status == PF_OK && id_diff == 0 && werr <= 2e-6 && same && a.guards_ok && a.fault == want_fault,
         fmt("ids differing: %zu, max |w - ref| %.2g (tol 2e-6), fault word %#llx (want %#llx)%s%s", id_diff, werr,
             a.fault, want_fault, same ? "" : " NOT DETERMINISTIC", a.guards_ok ? "" : " WROTE OUTSIDE ids/weights"));
}

void test_topk(int64_t T, int32_t E, int32_t k, bool renorm, bool ties) {
  const int G = pf::topk_group_lanes(E);
  check(fmt("topk_softmax E=%d (G=%d, %d a lane) k=%d T=%lld renorm=%d%s", E, G, (E + G - 1) / G, k, (long long)T,
            (int)renorm, ties ? " ties/-inf" : ""),
        make_logits(T, E, ties), T, E, k, renorm);
}

// Rows the op refuses among good ones; `bad` lists (row, what): 'n' a NaN, 'i' +Infinity,
// '-' every logit -Infinity.
void test_bad_rows(int64_t T, int32_t E, int32_t k, std::initializer_list<std::pair<int64_t, char>> bad) {
  std::vector<float> logits = make_logits(T, E, false);
  std::string rows;
  for (const auto& [t, what] : bad) {
    float* l = &logits[t * E];
    if (what == '-') std::fill(l, l + E, -INFINITY);
    else l[g_rng() % E] = what == 'n' ? NAN : INFINITY;
    rows += fmt(" %lld:%s", (long long)t, what == 'n' ? "NaN" : what == 'i' ? "+inf" : "all -inf");
  }
  check(fmt("faults: topk_softmax E=%d k=%d T=%lld, bad rows%s", E, k, (long long)T, rows.c_str()), logits, T, E, k,
        true);
}

}  // namespace

int main(int argc, char** argv) {
  start(argc, argv, "topk_softmax");
  // every lane-group width (E <= 8: 1 lane a row ... E > 128: 32) and register capacity (8, 16,
  // 32 values a lane), each edge from both sides; rows for two full blocks and a part-empty one
  for (int32_t E : {1, 3, 8, 9, 16, 17, 32, 33, 64, 65, 100, 128, 129, 256, 257, 300, 512, 513, 1000, 1024}) {
    const int64_t rows_per_block = 128 / pf::topk_group_lanes(E);
    std::vector<int32_t> ks = {1, 2, 8, E};
    std::sort(ks.begin(), ks.end());
    ks.erase(std::unique(ks.begin(), ks.end()), ks.end());
    for (int32_t k : ks) {
      if (k > E || (k == E && E > 64 && E != 1024)) continue;
      const int64_t T = k == E && E == 1024 ? 3 : 2 * rows_per_block + 3;
      test_topk(T, E, k, g_rng() % 2 == 0, E % 2 == 1 || k == E);
    }
  }
  test_topk(1, 10, 2, true, false);
  test_topk(1, 1024, 1, false, true);
  test_bad_rows(20, 6, 2, {{3, 'n'}, {5, 'i'}, {9, '-'}});
  test_bad_rows(40, 40, 3, {{7, '-'}, {12, 'n'}, {39, 'i'}});
  test_bad_rows(9, 600, 4, {{2, 'i'}, {8, 'n'}});
  test_bad_rows(300, 3, 3, {{290, 'n'}});
  return summary();
}
