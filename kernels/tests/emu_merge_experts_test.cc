// merge_experts' kernel (merge_experts.cu) runs on the CPU through the CUDA emulation
// (emu/cuda_emu.h) with its own launch code, on banks packed as the device's, against a
// float64 reference on fresh random inputs (seed printed; --seed N repeats a run): all three
// bank dtypes, both layouts, odd shapes over several row and column tiles, ranks past one step
// of 16 rank rows, mixed ranks with zero-rank experts, ids -1 and repeated, the float4 and the
// scalar paths (W not 16-byte aligned); and the faults bad ids and weights record, against what
// the CPU op reports first. W is guarded by canaries; every case runs twice for identical bits.
//
//   g++ -std=c++17 -O2 -U_FORTIFY_SOURCE -DPF_CUDA_EMULATE -I<cuda>/include -Ikernels/include
//       kernels/tests/emu_merge_experts_test.cc -o emu_merge_experts_test
// (test/cuda_kernels.test.ts builds and runs it wherever nvcc is installed.)
#include "emu/cuda_emu.h"
// the kernel under test, with its launch code
#include "../cuda/merge_experts.cu"

#include "emu/harness.h"

namespace {

using namespace pf_test;

struct Run : Outcome {
  std::vector<float> W;
};

Run run(const EmuBank& bank, const std::vector<int32_t>& ids, const std::vector<float>& w, const std::vector<float>& W0,
        bool in_out, int skew) {
  Guarded<int32_t> gi(ids);
  Guarded<float> gw(w), W(W0, skew);
  Run r;
  r.status = pf::cuda::merge_experts(bank.bank, gi.data(), gw.data(), (int32_t)ids.size(), W.data(), in_out, &r.fault,
                                     nullptr);
  r.W = W.values();
  r.guards_ok = W.guards_ok();
  return r;
}

// The fault the CPU op reports first, as a fault word key: ids, then weights.
unsigned long long cpu_fault(const std::vector<int32_t>& ids, const std::vector<float>& w, int32_t E) {
  for (size_t j = 0; j < ids.size(); ++j)
    if (ids[j] < -1 || ids[j] >= E) return (unsigned long long)pf::cuda::kFaultIds << 56 | j;
  for (size_t j = 0; j < w.size(); ++j)
    if (!isfinite(w[j])) return (unsigned long long)pf::cuda::kFaultWeights << 56 | j;
  return kNoFault;
}

void check(const std::string& name, const HostBank& h, const std::vector<int32_t>& ids, const std::vector<float>& w,
           bool in_out, int skew) {
  const std::vector<float> W0 = make_vec((size_t)h.din * h.dout, -1, 1);
  const std::vector<double> ref = merge_reference(h, ids, w, W0, in_out);
  const EmuBank bank(h);
  const Run a = run(bank, ids, w, W0, in_out, skew), b = run(bank, ids, w, W0, in_out, skew);
  const double err = rel_err(a.W, ref, &W0);
  const double tol = merge_tolerance(ref, W0);
  const bool same = same_bits(a.W, b.W) && a.fault == b.fault;
  const unsigned long long want = cpu_fault(ids, w, h.E);
  report(name, a.status == PF_OK && err <= tol && same && a.guards_ok && a.fault == want,
         fmt("rel err of the update %.2e (tol %.1e); fault word %#llx (want %#llx)%s%s", err, tol, a.fault, want,
             same ? "" : " NOT DETERMINISTIC", a.guards_ok ? "" : " WROTE OUTSIDE W"));
}

void test_merge(const HostBank& h, int32_t n, bool in_out, int skew) {
  std::vector<int32_t> ids(n);
  for (int32_t j = 0; j < n; ++j) ids[j] = j == 2 ? -1 : (int32_t)(g_rng() % h.E);  // repeats allowed
  const bool mixed = std::any_of(h.ranks.begin(), h.ranks.end(), [&](int32_t r) { return r != h.r; });
  check(fmt("merge_experts %s E=%d r=%d%s din=%d dout=%d n=%d %s%s", dtype_name(h.dt), h.E, h.r,
            mixed ? " (mixed ranks)" : "", h.din, h.dout, n, in_out ? "in_out" : "out_in", skew ? ", W misaligned" : ""),
        h, ids, make_vec(n, -1, 1), in_out, skew);
}

// Bad ids and weights: the fault word holds the first in the CPU op's order (ids, then
// weights) and W what skipping those entries gives.
void test_faults() {
  const HostBank h = make_bank(5, 4, 40, 24, PF_F16, true);
  struct Case {
    const char* what;
    int bad_id_at, bad_id, bad_w_at;
    float bad_w;
  } cases[] = {
      {"expert id out of range", 3, 5, -1, 0},
      {"expert id below -1", 1, -3, -1, 0},
      {"NaN weight", -1, 0, 4, NAN},
      {"-Infinity weight", -1, 0, 0, -INFINITY},
      {"bad id and NaN weight: ids first", 5, 7, 2, NAN},
  };
  for (const Case& c : cases)
    for (bool in_out : {true, false}) {
      std::vector<int32_t> ids(6);
      for (int32_t& e : ids) e = (int32_t)(g_rng() % h.E);
      std::vector<float> w = make_vec(6, -1, 1);
      if (c.bad_id_at >= 0) ids[c.bad_id_at] = c.bad_id;
      if (c.bad_w_at >= 0) w[c.bad_w_at] = c.bad_w;
      check(fmt("faults: merge_experts %s, %s", in_out ? "in_out" : "out_in", c.what), h, ids, w, in_out, 0);
    }
}

}  // namespace

int main(int argc, char** argv) {
  start(argc, argv, "merge_experts");
  for (pf_dtype dt : {PF_F32, PF_F16, PF_BF16})
    for (bool in_out : {true, false}) {
      test_merge(make_bank(4, 5, 67, 33, dt, true), 3, in_out, 0);
      // ranks over three steps of 16 rows, W over several row and column tiles
      test_merge(make_bank(6, 33, 130, 257, dt, true), 5, in_out, 0);
      // float4 loads and stores of W, then the same shape with W one float off
      test_merge(make_bank(3, 16, 64, 256, dt, false), 2, in_out, 0);
      test_merge(make_bank(3, 16, 64, 256, dt, true), 4, in_out, 1);
      test_merge(make_bank(1, 1, 1, 1, dt, false), 1, in_out, 0);
    }
  test_faults();
  return summary();
}
