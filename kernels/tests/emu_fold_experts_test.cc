// fold_experts' kernels (fold_experts.cu: the slot check, the A tiles, the B rows) run on the
// CPU through the CUDA emulation (emu/cuda_emu.h) with their own launch code, on banks packed
// as the device's, against the op's definition bit for bit (fold copies weights and scales
// rows by one f32 product) on fresh random inputs (seed printed; --seed N repeats a run): all
// three bank dtypes, special values, mixed ranks with zero-rank experts, ids -1 and repeated
// within a request, identity and explicit slots with slots no request names, R past k * rank
// and over several column tiles, both the float4 and the scalar store paths (outputs not
// 16-byte aligned); and the faults bad ids, weights and slots record, against what the CPU op
// reports first. Outputs are poisoned (NaN) and guarded by canaries; every case runs twice for
// identical bits.
//
//   g++ -std=c++17 -O2 -U_FORTIFY_SOURCE -DPF_CUDA_EMULATE -I<cuda>/include -Ikernels/include
//       kernels/tests/emu_fold_experts_test.cc -o emu_fold_experts_test
// (test/cuda_kernels.test.ts builds and runs it wherever nvcc is installed.)
#include "emu/cuda_emu.h"
// the kernels under test, with their launch code
#include "../cuda/fold_experts.cu"

#include "emu/harness.h"

namespace {

using namespace pf_test;

struct Call {
  const HostBank* h;
  std::vector<int32_t> ids;
  std::vector<float> w;
  int64_t B;
  int32_t k;
  std::vector<int32_t> slots;  // empty: request b in slot b
  int64_t S;
  int32_t R;
  int skew = 0;  // outputs this many floats past a 16-byte boundary
  int sms = 4;   // the multiprocessor count the slot check plans for
};

struct Run : Outcome {
  std::vector<float> a, b;
};

Run run(const EmuBank& bank, const Call& c) {
  const HostBank& h = *c.h;
  Guarded<int32_t> ids(c.ids), slots(c.slots.empty() ? std::vector<int32_t>{0} : c.slots);
  Guarded<float> w(c.w);
  Guarded<float> a((size_t)c.S * h.din * c.R, kPoison, c.skew), b((size_t)c.S * c.R * h.dout, kPoison, c.skew);
  std::vector<unsigned long long> first(c.S, ~0ull);  // the entry point's scratch, all ones
  pf::cuda::DeviceState dev;
  dev.sms = c.sms;
  Run r;
  r.status = pf::cuda::fold_experts(dev, bank.bank, ids.data(), w.data(), c.B, c.k,
                                    c.slots.empty() ? nullptr : slots.data(), c.S, c.R, a.data(), b.data(),
                                    first.data(), &r.fault, nullptr);
  r.a = a.values();
  r.b = b.values();
  r.guards_ok = a.guards_ok() && b.guards_ok();
  return r;
}

// The fault the CPU op reports first, as a fault word key: ids, then weights, then the slots
// in request order (out of range or repeated, whichever request comes first).
unsigned long long cpu_fault(const Call& c) {
  for (size_t i = 0; i < c.ids.size(); ++i)
    if (c.ids[i] < -1 || c.ids[i] >= c.h->E) return (unsigned long long)pf::cuda::kFaultIds << 56 | i;
  for (size_t i = 0; i < c.w.size(); ++i)
    if (!isfinite(c.w[i])) return (unsigned long long)pf::cuda::kFaultWeights << 56 | i;
  std::vector<bool> used(c.S, false);
  for (size_t b = 0; b < c.slots.size(); ++b) {
    const int32_t s = c.slots[b];
    if (s < 0 || s >= c.S || used[s]) return (unsigned long long)pf::cuda::kFaultSlots << 56 | b;
    used[s] = true;
  }
  return kNoFault;
}

void check(const std::string& name, const Call& c) {
  const HostBank& h = *c.h;
  std::vector<float> ra((size_t)c.S * h.din * c.R), rb((size_t)c.S * c.R * h.dout);
  for (float& v : ra) v = pf::bits_to_f32(kPoison);
  for (float& v : rb) v = pf::bits_to_f32(kPoison);
  fold_reference(h, c.ids, c.w, c.B, c.k, c.slots.empty() ? nullptr : c.slots.data(), c.S, c.R, &ra, &rb);
  const EmuBank bank(h);
  const Run x = run(bank, c), y = run(bank, c);
  size_t a_diff = 0, b_diff = 0;
  for (size_t i = 0; i < ra.size(); ++i) a_diff += fbits(x.a[i]) != fbits(ra[i]);
  for (size_t i = 0; i < rb.size(); ++i) b_diff += fbits(x.b[i]) != fbits(rb[i]);
  const bool same = same_bits(x.a, y.a) && same_bits(x.b, y.b) && x.fault == y.fault;
  const unsigned long long want = cpu_fault(c);
  report(name, x.status == PF_OK && a_diff == 0 && b_diff == 0 && same && x.guards_ok && x.fault == want,
         fmt("elements differing from the definition: %zu (A) %zu (B); fault word %#llx (want %#llx)%s%s", a_diff,
             b_diff, x.fault, want, same ? "" : " NOT DETERMINISTIC", x.guards_ok ? "" : " WROTE OUTSIDE out"));
}

// Random ids in [-1, E), repeats allowed (p_skip: the share of -1).
std::vector<int32_t> any_ids(int64_t n, int32_t E, double p_skip) {
  std::vector<int32_t> ids(n);
  for (int32_t& e : ids) e = uni(0, 1) < p_skip ? -1 : (int32_t)(g_rng() % E);
  return ids;
}

// B of S slots, in random order.
std::vector<int32_t> some_slots(int64_t B, int64_t S) {
  std::vector<int32_t> perm(S);
  for (int64_t i = 0; i < S; ++i) perm[i] = (int32_t)i;
  std::shuffle(perm.begin(), perm.end(), g_rng);
  return std::vector<int32_t>(perm.begin(), perm.begin() + B);
}

void test_fold(const HostBank& h, int64_t B, int32_t k, int32_t R, bool with_slots, int64_t S, bool repeats, int skew,
               const char* label) {
  Call c{&h, repeats ? any_ids(B * k, h.E, 0.2) : make_ids(B, k, h.E, 0.15), make_vec((size_t)B * k, -1, 1), B, k,
         with_slots ? some_slots(B, S) : std::vector<int32_t>{}, S, R, skew};
  const bool mixed = std::any_of(h.ranks.begin(), h.ranks.end(), [&](int32_t r) { return r != h.r; });
  check(fmt("fold_experts %s E=%d r=%d%s din=%d dout=%d B=%lld k=%d R=%d S=%lld %s%s%s%s", dtype_name(h.dt), h.E, h.r,
            mixed ? " (mixed ranks)" : "", h.din, h.dout, (long long)B, k, R, (long long)S,
            with_slots ? "slots" : "identity", repeats ? ", ids repeated" : "", skew ? ", out misaligned" : "", label),
        c);
}

// Bad ids, weights and slots: the fault word holds what the CPU op reports first; what the
// kernels write for the rest is checked as in test_fold (a slot named twice by two identical
// requests, so its contents do not depend on which write lands last).
void test_faults() {
  const HostBank h = make_bank(6, 4, 40, 24, PF_F16, true);
  const int64_t B = 4, S = 6;
  const int32_t k = 2, R = 8;
  struct Case {
    const char* what;
    int bad_id_at, bad_id, bad_w_at;
    float bad_w;
    std::vector<int32_t> slots;
  } cases[] = {
      {"expert id out of range", 5, 6, -1, 0, {2, 4, 0, 5}},
      {"expert id below -1", 2, -3, -1, 0, {}},
      {"NaN weight", -1, 0, 3, NAN, {1, 0, 3, 2}},
      {"+Infinity weight", -1, 0, 6, INFINITY, {}},
      {"bad id and NaN weight: ids first", 7, 9, 1, NAN, {}},
      {"slot out of range", -1, 0, -1, 0, {2, 6, 0, 5}},
      {"slot -1", -1, 0, -1, 0, {-1, 1, 2, 3}},
      {"a slot twice", -1, 0, -1, 0, {1, 0, 1, 3}},
      {"bad id and a slot twice: ids first", 6, 6, -1, 0, {1, 0, 1, 3}},
      {"a slot twice, then one out of range: the repeat first", -1, 0, -1, 0, {0, 0, 7, 1}},
      {"a slot out of range, then one twice: the range first", -1, 0, -1, 0, {3, 9, 3, 1}},
  };
  for (const Case& cs : cases) {
    Call c{&h, make_ids(B, k, h.E, 0.1), make_vec((size_t)B * k, -1, 1), B, k, cs.slots, S, R};
    for (size_t b = 0; b < cs.slots.size(); ++b)
      for (size_t d = 0; d < b; ++d)
        if (cs.slots[d] == cs.slots[b])
          for (int32_t j = 0; j < k; ++j) c.ids[b * k + j] = c.ids[d * k + j], c.w[b * k + j] = c.w[d * k + j];
    if (cs.bad_id_at >= 0) c.ids[cs.bad_id_at] = cs.bad_id;
    if (cs.bad_w_at >= 0) c.w[cs.bad_w_at] = cs.bad_w;
    check(fmt("faults: fold_experts, %s", cs.what), c);
  }
}

// Repeats far apart: with one multiprocessor the slot check runs 8 blocks of 256 threads, so a
// thread checks requests b and b + 2048, and request 2100 is seen before request 300 (and on a
// GPU, any order). Requests 300 and 2100 share slot v, 400 and 500 slot u: the CPU op reports
// the repeat at 500, the first request whose slot was named before.
void test_slot_order() {
  const HostBank h = make_bank(2, 1, 1, 1, PF_F32, false);
  const int64_t B = 2200;
  Call c{&h, make_ids(B, 1, h.E, 0.0), make_vec(B, -1, 1), B, 1, some_slots(B, B), B, 1};
  c.sms = 1;
  c.slots[2100] = c.slots[300], c.slots[500] = c.slots[400];
  for (int64_t b : {2100, 500}) c.ids[b] = c.ids[b == 500 ? 400 : 300], c.w[b] = c.w[b == 500 ? 400 : 300];
  check("faults: fold_experts, slots repeated far apart (2200 requests): the first repeat in request order", c);
}

}  // namespace

int main(int argc, char** argv) {
  start(argc, argv, "fold_experts");
  for (pf_dtype dt : {PF_F32, PF_F16, PF_BF16}) {
    // special values; R % 4 == 0 (float4 A stores), dout 21 (scalar B stores)
    test_fold(special_bank(dt), 3, 2, 8, false, 3, false, 0, ", special values");
    // odd everything, slots among more slots than requests
    test_fold(make_bank(5, 4, 33, 19, dt, true), 3, 2, 10, true, 6, false, 0, "");
    test_fold(make_bank(7, 6, 129, 65, dt, true), 5, 3, 21, true, 9, true, 0, "");
    // float4 stores on both sides, and the same shapes with the outputs one float off
    test_fold(make_bank(4, 8, 200, 96, dt, false), 4, 2, 16, false, 6, false, 0, "");
    test_fold(make_bank(4, 8, 200, 96, dt, true), 4, 2, 16, true, 5, true, 1, "");
    // several A column tiles (R > 32), several din tiles; k = E; the smallest bank
    test_fold(make_bank(6, 16, 130, 32, dt, true), 2, 3, 50, true, 3, false, 0, "");
    test_fold(make_bank(3, 2, 70, 40, dt, true), 2, 3, 7, true, 4, true, 0, "");
    test_fold(make_bank(1, 1, 1, 1, dt, false), 2, 1, 1, false, 2, false, 0, "");
  }
  test_faults();
  test_slot_order();
  return summary();
}
