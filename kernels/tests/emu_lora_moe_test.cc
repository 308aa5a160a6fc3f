// lora_moe's four paths run on the CPU through the CUDA emulation (emu/cuda_emu.h, with
// emu/wmma_emu.h for the tensor-core fragments): decode (lora_moe.cu: shrink + expand kernels),
// fused (lora_moe_fused.cu: one kernel), grouped and dense (lora_moe_grouped.cu: tiled shrink
// and expand on WMMA, over tiles of one expert's tokens or over every expert with a mask). The kernels and their launch code exactly as nvcc compiles
// them, checked against a float64 reference on fresh
// random inputs (seed printed; --seed N repeats a run), all three bank dtypes, odd shapes,
// mixed ranks, misaligned activations, unrouted tokens, and the faults bad ids and weights
// record. Outputs are poisoned where the kernels must write them (g), guarded where they must
// not (around y), and each case runs twice for identical bits.
//
//   g++ -std=c++17 -O2 -U_FORTIFY_SOURCE -DPF_CUDA_EMULATE -I<cuda>/include -Ikernels/include
//       kernels/tests/emu_lora_moe_test.cc -o emu_lora_moe_test
// (test/cuda_kernels.test.ts builds and runs it wherever nvcc is installed.)
#include "emu/cuda_emu.h"
#include "emu/wmma_emu.h"
// the kernels under test, with their launch code
#include "../cuda/lora_moe.cu"
#include "../cuda/lora_moe_fused.cu"
#include "../cuda/lora_moe_grouped.cu"

#include "emu/harness.h"

// What the included sources need beyond harness.h's stubs (status.cu, device.cu) and from the
// CUDA runtime, over host memory. Scratch is filled with NaN (0xff bytes): a kernel that reads
// scratch nothing wrote spreads NaN into y.
namespace pf {
namespace cuda {
pf_status cuda_fail(cudaError_t, const char*) { return PF_ERR_BACKEND; }
int64_t g_fused_max = 0;
int64_t opt_fused_max_tokens() { return g_fused_max; }
int64_t opt_prefill_min_tokens() { return 0; }
int64_t g_dense_max = 0;
int64_t opt_dense_max_columns() { return g_dense_max; }
pf_status Scratch::alloc(size_t bytes, void** out) {
  if (n_ == 4) return PF_ERR_BACKEND;
  const size_t n = (bytes + 255) / 256 * 256;
  *out = aligned_alloc(256, n);
  if (!*out) return PF_ERR_MEMORY;
  memset(*out, 0xff, n);
  ptrs_[n_++] = *out;
  return PF_OK;
}
Scratch::~Scratch() {
  for (int i = 0; i < n_; ++i) free(ptrs_[i]);
}
}  // namespace cuda
}  // namespace pf
extern "C" cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t) {
  memset(p, value, bytes);
  return cudaSuccess;
}
extern "C" cudaError_t cudaFuncSetAttribute(const void*, cudaFuncAttribute, int) { return cudaSuccess; }

namespace {

using namespace pf_test;

struct Run : Outcome {
  std::vector<float> y;
  bool g_written = true;  // decode: every g element its pairs need was written (not the poison)
};

// One call of `path` ("decode", "fused", "grouped" or "dense") on a bank packed as the device's,
// over host memory; `sms` is the multiprocessor count the launch code plans for. A misaligned x
// starts one float past a 16-byte boundary, so its rows lose their alignment.
Run run_path(const char* path, const EmuBank& eb, const std::vector<float>& x, int64_t T,
             const std::vector<int32_t>& ids, const std::vector<float>& w, int32_t k, const std::vector<float>& y0,
             bool misalign, int sms) {
  Guarded<float> xs(x, misalign ? 1 : 0), ys(y0);
  Run r;
  pf::cuda::MoeCall call{&eb.bank, xs.data(), T, ids.data(), w.data(), k, ys.data(), &r.fault, nullptr};
  const pf_cuda_bank& b = eb.bank;
  if (strcmp(path, "decode") == 0) {
    Guarded<float> g((size_t)T * k * b.rank, kPoison);
    r.status = b.dtype == PF_F32   ? pf::cuda::decode<pf::kF32>(call, g.data())
               : b.dtype == PF_F16 ? pf::cuda::decode<pf::kF16>(call, g.data())
                                   : pf::cuda::decode<pf::kBF16>(call, g.data());
    const std::vector<float> gv = g.values();
    for (int64_t p = 0; p < T * k; ++p) {
      const int32_t e = ids[p];
      if (e < 0 || e >= b.experts) continue;
      for (int32_t q = 0; q < b.ranks[e]; ++q) r.g_written &= fbits(gv[p * b.rank + q]) != kPoison;
    }
    r.guards_ok = g.guards_ok();
  } else if (strcmp(path, "fused") == 0) {
    pf::cuda::DeviceState dev;
    dev.sms = sms;
    r.status = pf::cuda::moe_fused(dev, call);
  } else {
    pf::cuda::DeviceState dev;  // an H100's limits: the path's checks pass as on the device
    dev.sms = sms, dev.cc_major = 9, dev.smem_optin = 227 * 1024;
    pf::cuda::Scratch scratch(dev, nullptr);
    const bool dense = strcmp(path, "dense") == 0;
    pf::cuda::g_dense_max = dense ? 256 : 0;
    const bool fits = dense ? pf::cuda::moe_dense_fits(dev, call) : pf::cuda::moe_grouped_fits(dev, call);
    r.status = !fits    ? PF_ERR_ARGUMENT
               : dense ? pf::cuda::moe_dense(dev, call, scratch)
                       : pf::cuda::moe_grouped(dev, call, scratch);
    pf::cuda::g_dense_max = 0;
  }
  r.guards_ok = r.guards_ok && ys.guards_ok() && xs.guards_ok();
  r.y = ys.values();
  return r;
}

void test_moe(const MoeShape& s, pf_dtype dt, const char* path, bool misalign, int sms) {
  const std::string name = fmt("lora_moe %s %s E=%d r=%d%s din=%d dout=%d T=%lld k=%d%s%s", dtype_name(dt), path, s.E,
                               s.r, s.hetero ? " (mixed ranks)" : "", s.din, s.dout, (long long)s.T, s.k,
                               misalign ? " x misaligned" : "", strcmp(path, "decode") != 0 ? fmt(" sms=%d", sms).c_str() : "");
  const HostBank h = make_bank(s.E, s.r, s.din, s.dout, dt, s.hetero);
  std::vector<float> x((size_t)s.T * s.din), y0 = make_vec((size_t)s.T * s.dout, -1, 1);
  const std::vector<float> w = make_vec((size_t)s.T * s.k, 0.05f, 1);
  for (float& v : x) v = gauss();
  std::vector<int32_t> ids = make_ids(s.T, s.k, s.E, 0.1);
  if (s.T > 2)
    for (int32_t j = 0; j < s.k; ++j) ids[1 * s.k + j] = -1;  // token 1 routes nowhere: its y row stays
  const std::vector<double> ref = moe_reference(h, x, s.T, ids, w, s.k, y0);
  const EmuBank bank(h);
  const Run a = run_path(path, bank, x, s.T, ids, w, s.k, y0, misalign, sms);
  const Run b = run_path(path, bank, x, s.T, ids, w, s.k, y0, misalign, sms);
  const double err = rel_err(a.y, ref, &y0);
  const bool same = same_bits(a.y, b.y);
  bool untouched = true;
  if (s.T > 2)
    for (int32_t o = 0; o < s.dout; ++o) untouched &= fbits(a.y[1 * s.dout + o]) == fbits(y0[1 * s.dout + o]);
  // decode, fused: f32 accumulation over din + r terms against exact stored weights; grouped:
  // also the hi + lo split of x and of the gates (about 22 bits for f16, 16 for bf16)
  const bool mma = strcmp(path, "grouped") == 0 || strcmp(path, "dense") == 0;
  const double tol = mma ? 1e-4 : 1e-5;
  report(name, a.status == PF_OK && err <= tol && same && untouched && a.guards_ok && a.g_written && a.fault == kNoFault,
         fmt("%srel err %.2e (tol %.0e)%s%s%s%s%s", a.status == PF_OK ? "" : "LAUNCH FAILED; ", err, tol,
             same ? "" : " NOT DETERMINISTIC",
             untouched ? "" : " UNROUTED ROW CHANGED", a.guards_ok ? "" : " WROTE OUTSIDE y",
             a.g_written ? "" : " g NOT WRITTEN", a.fault == kNoFault ? "" : " FAULT RECORDED"));
}

// Bad ids and a NaN weight: the fault word holds the first fault in the CPU op's order (ids
// before weights, then the lowest index) and y is what skipping those pairs gives.
void test_faults(const char* path) {
  const HostBank h = make_bank(6, 8, 40, 24, PF_F16, false);
  const int64_t T = 9;
  const int32_t k = 2;
  std::vector<float> x((size_t)T * h.din), y0 = make_vec((size_t)T * h.dout, -1, 1), w = make_vec(T * k, 0.1f, 1);
  for (float& v : x) v = gauss();
  const std::vector<int32_t> ids = make_ids(T, k, h.E, 0.0);
  const EmuBank bank(h);
  struct Case {
    const char* what;
    int bad_id_at, bad_id, nan_w_at;
    unsigned long long want;
  } cases[] = {
      {"expert id out of range", 7, 6, -1, (unsigned long long)pf::cuda::kFaultIds << 56 | 7},
      {"expert id below -1", 12, -3, -1, (unsigned long long)pf::cuda::kFaultIds << 56 | 12},
      {"NaN weight", -1, 0, 11, (unsigned long long)pf::cuda::kFaultWeights << 56 | 11},
      {"bad id and NaN weight: ids first", 15, 9, 3, (unsigned long long)pf::cuda::kFaultIds << 56 | 15},
  };
  for (const Case& c : cases) {
    std::vector<int32_t> bad = ids, skipped = ids;
    std::vector<float> bw = w;
    if (c.bad_id_at >= 0) bad[c.bad_id_at] = c.bad_id, skipped[c.bad_id_at] = -1;
    if (c.nan_w_at >= 0) bw[c.nan_w_at] = NAN, skipped[c.nan_w_at] = -1;
    const std::vector<double> ref = moe_reference(h, x, T, skipped, bw, k, y0);
    const Run r = run_path(path, bank, x, T, bad, bw, k, y0, false, 4);
    const double err = rel_err(r.y, ref, &y0);
    report(fmt("faults: lora_moe %s, %s", path, c.what),
           r.status == PF_OK && r.fault == c.want && err <= 1e-5 && r.guards_ok,
           fmt("fault word %#llx (want %#llx), rel err %.2e", r.fault, c.want, err));
  }
}

// The fused grid: every chunk of outputs in exactly one block, about `sms` blocks in all.
void test_plan() {
  bool ok = true;
  std::string bad;
  for (int64_t nchunks : {1, 2, 3, 16, 17, 32, 100})
    for (int64_t T : {1, 2, 5, 16, 64, 131, 132, 133, 1000})
      for (int sms : {1, 8, 132}) {
        const pf::cuda::FusedPlan p = pf::cuda::plan_fused(nchunks, T, sms);
        const bool covers = p.blocks_per_token * p.chunks_per_block >= nchunks &&
                            (p.blocks_per_token - 1) * p.chunks_per_block < nchunks && p.blocks_per_token >= 1;
        // the target, min(nchunks, ceil(sms / T)) blocks per token, is met within a factor 2 below
        const int64_t target = std::min<int64_t>(nchunks, std::max<int64_t>(1, (sms + T - 1) / T));
        const bool spread = p.blocks_per_token <= target && 2 * p.blocks_per_token >= target;
        if (!(covers && spread) && bad.empty())
          bad = fmt("nchunks %lld T %lld sms %d: %lld blocks x %lld chunks", (long long)nchunks, (long long)T, sms,
                    (long long)p.blocks_per_token, (long long)p.chunks_per_block);
        ok &= covers && spread;
      }
  report("plan_fused: each chunk in one block, about one block per multiprocessor", ok, bad);
}

void test_fits() {
  pf_cuda_bank bank;
  bank.rank = 8, bank.dtype = PF_F16;
  pf::cuda::MoeCall c{&bank, nullptr, 16, nullptr, nullptr, 2, nullptr, nullptr, nullptr};
  pf::cuda::g_fused_max = 0;
  const bool off = !pf::cuda::moe_fused_fits(c);
  pf::cuda::g_fused_max = 16;
  const bool on = pf::cuda::moe_fused_fits(c);
  c.T = 17;
  const bool past = !pf::cuda::moe_fused_fits(c);
  c.T = 1, c.k = 1000, bank.rank = 64;  // 256 KB of gates: more shared memory than a block gets without opt-in
  const bool big = !pf::cuda::moe_fused_fits(c);
  pf::cuda::g_fused_max = 0;
  report("moe_fused_fits: off by default, up to moe_fused_max_tokens, not past the shared memory", off && on && past && big);
}

}  // namespace

int main(int argc, char** argv) {
  start(argc, argv, "lora_moe's four paths");
  test_plan();
  test_fits();
  // shapes: odd dims (no 16-byte rows), one token at d 4096, ranks past the 4-row groups,
  // mixed ranks with zero-rank experts, k = E, din = dout = 1
  const MoeShape shapes[] = {{3, 5, 67, 33, 7, 2, false},  {10, 16, 4096, 4096, 1, 2, false},
                             {10, 16, 256, 384, 16, 2, false}, {5, 40, 130, 250, 6, 3, true},
                             {6, 8, 1, 1, 9, 6, false},       {2, 1, 17, 9, 5, 2, true},
                             {8, 64, 300, 200, 4, 2, true}};
  for (const MoeShape& s : shapes)
    for (pf_dtype dt : {PF_F32, PF_F16, PF_BF16})
      for (const char* path : {"decode", "fused"}) {
        const bool misalign = s.din % 4 == 0 && s.T % 2 == 1;
        test_moe(s, dt, path, misalign, strcmp(path, "fused") == 0 && s.T < 8 ? 132 : 4);
      }
  // grouped (f16 / bf16 banks, rank <= 128): one tile and several per group, mixed ranks over
  // several rank tiles, k = 1 and 3, odd dims
  const MoeShape grouped[] = {{10, 16, 256, 384, 64, 2, false}, {2, 16, 96, 80, 150, 1, false},
                              {5, 40, 130, 250, 40, 3, true},   {2, 1, 17, 9, 33, 2, true}};
  for (const MoeShape& s : grouped)
    for (pf_dtype dt : {PF_F16, PF_BF16})
      for (const char* path : {"grouped", "dense"}) test_moe(s, dt, path, s.din % 4 == 0 && s.T % 2 == 1, 4);
  // dense: C = Σ r_e past one 128-column block (E 10 x r 16 = 160), and at the 256 limit
  const MoeShape dense[] = {{10, 16, 200, 136, 70, 2, false}, {4, 64, 64, 48, 20, 3, false}};
  for (const MoeShape& s : dense)
    for (pf_dtype dt : {PF_F16, PF_BF16}) test_moe(s, dt, "dense", s.din % 4 == 0 && s.T % 2 == 1, 4);
  for (const char* path : {"decode", "fused", "grouped", "dense"}) test_faults(path);
  return summary();
}
