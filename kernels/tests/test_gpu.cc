// npm run test:gpu — every op of libpersonafuse_cuda against libpersonafuse_kernels (the CPU
// kernels) and a float64 reference, on fresh random inputs (seed printed; --seed N repeats a
// run), outputs poisoned before each run, all three bank dtypes, odd shapes, the four lora_moe
// paths, heterogeneous ranks, misaligned activations, and the error cases. Plain C++ over the
// two C ABIs (no CUDA headers): it is also a test of the plugin API.
//
// --quick keeps the small shapes (every path and dtype), for runs under compute-sanitizer.
// Prints one PASS/FAIL line per case and a summary; exit code 1 on any failure. Without a
// device it checks that the library loads and fails cleanly, then prints
// "skipped: no CUDA device (...)" and exits 0.
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <chrono>
#include <random>
#include <string>
#include <vector>

#include "../common/numeric.h"
#include "personafuse.h"
#include "personafuse_cuda.h"
#include "test_support.h"

namespace {

using namespace pf_test;

int64_t g_prefill_default = -1;  // moe_prefill_min_tokens as the library starts (main reads it)
int64_t g_fused_default = 0;     // moe_fused_max_tokens, likewise
int64_t g_dense_default = 0;     // moe_dense_max_columns, likewise

// ---- device buffers ------------------------------------------------------------------------

struct DBuf {
  void* p = nullptr;
  size_t bytes = 0;
  DBuf() = default;
  explicit DBuf(size_t n) : bytes(n) {
    if (pf_cuda_malloc(n, &p) != PF_OK) {
      fprintf(stderr, "pf_cuda_malloc(%zu): %s\n", n, pf_cuda_last_error());
      p = nullptr;
    }
  }
  DBuf(const DBuf&) = delete;
  DBuf& operator=(const DBuf&) = delete;
  ~DBuf() { pf_cuda_free(p); }
  template <class T>
  T* as(size_t offset_elems = 0) const { return static_cast<T*>(p) + offset_elems; }
};

template <class T>
bool upload(DBuf& d, const std::vector<T>& h, size_t offset_elems = 0) {
  return d.p && pf_cuda_memcpy_h2d(d.as<T>(offset_elems), h.data(), h.size() * sizeof(T), nullptr) == PF_OK;
}
template <class T>
bool download(std::vector<T>& h, const DBuf& d, size_t offset_elems = 0) {
  return pf_cuda_memcpy_d2h(h.data(), d.as<T>(offset_elems), h.size() * sizeof(T), nullptr) == PF_OK;
}
bool poison(DBuf& d) { return pf_cuda_memset(d.p, 0xff, d.bytes, nullptr) == PF_OK; }  // f32 NaN

// ---- random inputs ---------------------------------------------------------------------------

// ---- topk_softmax -----------------------------------------------------------------------------

void test_topk(int64_t T, int32_t E, int32_t k, int renorm, bool ties) {
  const std::string name = fmt("topk_softmax T=%lld E=%d k=%d renorm=%d%s", (long long)T, E, k, renorm,
                               ties ? " ties/-inf" : "");
  const std::vector<float> logits = make_logits(T, E, ties);
  std::vector<int32_t> rid;
  std::vector<double> rw;
  topk_reference(logits, T, E, k, renorm, &rid, &rw);
  std::vector<int32_t> cid((size_t)T * k), gid((size_t)T * k);
  std::vector<float> cw((size_t)T * k), gw((size_t)T * k);
  const pf_status cs = pf_topk_softmax(logits.data(), T, E, k, renorm, cid.data(), cw.data(), nullptr);
  DBuf dl(logits.size() * 4), di(gid.size() * 4), dw(gw.size() * 4);
  if (!upload(dl, logits) || pf_cuda_memset(di.p, 0x7f, di.bytes, nullptr) || !poison(dw)) {
    report(name, false, fmt("setup: %s", pf_cuda_last_error()));
    return;
  }
  int64_t bad_row = 0;
  const pf_status gs = pf_cuda_topk_softmax(dl.as<float>(), T, E, k, renorm, di.as<int32_t>(), dw.as<float>(), &bad_row,
                                            nullptr);
  if (gs != PF_OK || !download(gid, di) || !download(gw, dw)) {
    report(name, false, fmt("%s: %s", pf_cuda_status_name(gs), pf_cuda_last_error()));
    return;
  }
  size_t id_ref = 0, id_cpu = 0;
  double werr = 0, werr_cpu = 0;
  for (size_t i = 0; i < gid.size(); ++i) {
    id_ref += gid[i] != rid[i];
    id_cpu += gid[i] != cid[i];
    werr = std::max(werr, isnan(gw[i]) ? INFINITY : fabs(gw[i] - rw[i]));
    werr_cpu = std::max(werr_cpu, fabs((double)gw[i] - cw[i]));
  }
  report(name, cs == PF_OK && id_ref == 0 && id_cpu == 0 && werr <= 2e-6 && bad_row == -1,
         fmt("ids differ: %zu (ref) %zu (cpu); max |w - ref| %.2g, |w - cpu| %.2g", id_ref, id_cpu, werr, werr_cpu));
}

// ---- lora_moe ----------------------------------------------------------------------------------

// The four lora_moe paths, each forced on: "decode" (two kernels), "fused" (one kernel),
// "grouped" and "dense" (tensor cores; f16/bf16 banks only; dense also only for banks of at
// most 256 columns, E <= 64: dense_applies). use_path(nullptr) restores the defaults.
const char* const kMoePaths[] = {"decode", "fused", "grouped", "dense"};
void use_path(const char* path) {
  const auto is = [&](const char* p) { return path && strcmp(path, p) == 0; };
  pf_cuda_set_option("moe_prefill_min_tokens", !path ? g_prefill_default : is("grouped") || is("dense") ? 0 : -1);
  pf_cuda_set_option("moe_fused_max_tokens", !path ? g_fused_default : is("fused") ? INT64_MAX : 0);
  pf_cuda_set_option("moe_dense_max_columns", !path ? g_dense_default : is("dense") ? 256 : 0);
}
bool dense_applies(const HostBank& h) {
  int64_t C = 0;
  for (int32_t r : h.ranks) C += r;
  return h.dt != PF_F32 && C >= 1 && C <= 256 && h.E <= 64;
}

// path: one of kMoePaths.
void test_moe(const MoeShape& s, pf_dtype dt, const char* path, bool misalign) {
  const std::string name = fmt("lora_moe %s %s E=%d r=%d%s din=%d dout=%d T=%lld k=%d%s", dtype_name(dt), path, s.E,
                               s.r, s.hetero ? " (mixed ranks)" : "", s.din, s.dout, (long long)s.T, s.k,
                               misalign ? " x/y misaligned" : "");
  const HostBank h = make_bank(s.E, s.r, s.din, s.dout, dt, s.hetero);
  if (strcmp(path, "dense") == 0 && !dense_applies(h)) return;  // the bank would take another path
  std::vector<float> x((size_t)s.T * s.din), y0 = make_vec((size_t)s.T * s.dout, -1, 1), w = make_vec((size_t)s.T * s.k, 0.05f, 1);
  for (float& v : x) v = gauss();
  std::vector<int32_t> ids = make_ids(s.T, s.k, s.E, 0.1);
  if (s.T > 2)
    for (int32_t j = 0; j < s.k; ++j) ids[1 * s.k + j] = -1;  // token 1 routes nowhere: y row untouched
  const std::vector<double> ref = moe_reference(h, x, s.T, ids, w, s.k, y0);

  pf_bank* cb = nullptr;
  std::vector<float> ycpu = y0;
  pf_status cs = pf_bank_create(s.E, s.r, s.din, s.dout, dt, h.a_data(), h.b_data(), h.scales.data(), h.ranks.data(), &cb);
  if (!cs) cs = pf_lora_moe(cb, x.data(), s.T, ids.data(), w.data(), s.k, ycpu.data());
  pf_bank_destroy(cb);

  pf_cuda_bank* gb = nullptr;
  pf_status gs = pf_cuda_bank_create(s.E, s.r, s.din, s.dout, dt, h.a_data(), h.b_data(), h.scales.data(),
                                     h.ranks.data(), &gb);
  if (gs) {
    report(name, false, fmt("pf_cuda_bank_create: %s", pf_cuda_last_error()));
    return;
  }
  const size_t off = misalign ? 1 : 0;  // one float in: rows lose 16-byte alignment
  DBuf dx((x.size() + off) * 4), dy((y0.size() + off) * 4), di(ids.size() * 4), dw(w.size() * 4);
  use_path(path);
  std::vector<float> yg(y0.size()), yg2(y0.size());
  bool ok = upload(dx, x, off) && upload(di, ids) && upload(dw, w) && upload(dy, y0, off);
  if (ok) gs = pf_cuda_lora_moe(gb, dx.as<float>(off), s.T, di.as<int32_t>(), dw.as<float>(), s.k, dy.as<float>(off), nullptr);
  ok = ok && gs == PF_OK && download(yg, dy, off);
  // again from the same y0: the same bits (no race, no order dependence)
  if (ok) ok = upload(dy, y0, off) &&
               pf_cuda_lora_moe(gb, dx.as<float>(off), s.T, di.as<int32_t>(), dw.as<float>(), s.k, dy.as<float>(off), nullptr) == PF_OK &&
               download(yg2, dy, off);
  use_path(nullptr);
  pf_cuda_bank_destroy(gb);
  if (!ok) {
    report(name, false, fmt("%s: %s", pf_cuda_status_name(gs), pf_cuda_last_error()));
    return;
  }
  const double err = rel_err(yg, ref, &y0), err_cpu = rel_err(ycpu, ref, &y0);
  const bool same = memcmp(yg.data(), yg2.data(), yg.size() * 4) == 0;
  bool untouched = true;
  if (s.T > 2)
    for (int32_t o = 0; o < s.dout; ++o) untouched &= fbits(yg[1 * s.dout + o]) == fbits(y0[1 * s.dout + o]);
  const bool mma = strcmp(path, "grouped") == 0 || strcmp(path, "dense") == 0;
  const double tol = mma ? 1e-4 : 1e-5;  // grouped, dense: hi/lo-split tensor-core operands
  report(name, cs == PF_OK && err <= tol && same && untouched,
         fmt("rel err %.2e (cpu %.2e, tol %.0e)%s%s", err, err_cpu, tol, same ? "" : " NOT DETERMINISTIC",
             untouched ? "" : " UNROUTED ROW CHANGED"));
}

// ---- fold_experts -------------------------------------------------------------------------------

void test_fold(const HostBank& h, int64_t B, int32_t k, int32_t R, bool with_slots, int64_t num_slots,
               const char* label) {
  const std::string name = fmt("fold_experts %s E=%d r=%d%s din=%d dout=%d B=%lld k=%d R=%d %s%s", dtype_name(h.dt), h.E,
                               h.r, h.ranks[1] != h.r ? " (mixed ranks)" : "", h.din, h.dout, (long long)B, k, R,
                               with_slots ? "slots" : "identity", label);
  std::vector<int32_t> ids = make_ids(B, k, h.E, 0.15), slots;
  std::vector<float> w = make_vec((size_t)B * k, -1, 1);
  if (with_slots) {
    std::vector<int32_t> perm(num_slots);
    for (int64_t i = 0; i < num_slots; ++i) perm[i] = (int32_t)i;
    std::shuffle(perm.begin(), perm.end(), g_rng);
    slots.assign(perm.begin(), perm.begin() + B);
  }
  const size_t na = (size_t)num_slots * h.din * R, nb = (size_t)num_slots * R * h.dout;
  std::vector<float> ca(na), cbv(nb), ga(na), gbv(nb);
  memset(ca.data(), 0xff, na * 4);
  memset(cbv.data(), 0xff, nb * 4);
  pf_bank* cb = nullptr;
  pf_status cs = pf_bank_create(h.E, h.r, h.din, h.dout, h.dt, h.a_data(), h.b_data(), h.scales.data(), h.ranks.data(), &cb);
  if (!cs) cs = pf_fold_experts(cb, ids.data(), w.data(), B, k, with_slots ? slots.data() : nullptr, num_slots, R,
                                ca.data(), cbv.data());
  pf_bank_destroy(cb);
  pf_cuda_bank* gb = nullptr;
  pf_status gs = pf_cuda_bank_create(h.E, h.r, h.din, h.dout, h.dt, h.a_data(), h.b_data(), h.scales.data(),
                                     h.ranks.data(), &gb);
  DBuf di(ids.size() * 4), dw(w.size() * 4), ds(std::max<size_t>(slots.size(), 1) * 4), da(na * 4), db(nb * 4);
  bool ok = gs == PF_OK && upload(di, ids) && upload(dw, w) && (!with_slots || upload(ds, slots)) && poison(da) && poison(db);
  if (ok) gs = pf_cuda_fold_experts(gb, di.as<int32_t>(), dw.as<float>(), B, k, with_slots ? ds.as<int32_t>() : nullptr,
                                    num_slots, R, da.as<float>(), db.as<float>(), nullptr);
  ok = ok && gs == PF_OK && download(ga, da) && download(gbv, db);
  pf_cuda_bank_destroy(gb);
  if (!ok) {
    report(name, false, fmt("%s: %s", pf_cuda_status_name(gs), pf_cuda_last_error()));
    return;
  }
  // the CPU writes named slots completely and leaves the rest: bit-for-bit agreement covers both
  size_t da_diff = 0, db_diff = 0;
  for (size_t i = 0; i < na; ++i) da_diff += fbits(ga[i]) != fbits(ca[i]);
  for (size_t i = 0; i < nb; ++i) db_diff += fbits(gbv[i]) != fbits(cbv[i]);
  // and against the definition (slots no request names still poisoned)
  std::vector<float> ra(na), rb(nb);
  memset(ra.data(), 0xff, na * 4);
  memset(rb.data(), 0xff, nb * 4);
  fold_reference(h, ids, w, B, k, with_slots ? slots.data() : nullptr, num_slots, R, &ra, &rb);
  size_t ref_diff = 0;
  for (size_t i = 0; i < na; ++i) ref_diff += fbits(ga[i]) != fbits(ra[i]);
  for (size_t i = 0; i < nb; ++i) ref_diff += fbits(gbv[i]) != fbits(rb[i]);
  report(name, cs == PF_OK && da_diff == 0 && db_diff == 0 && ref_diff == 0,
         fmt("elements differing from the CPU: %zu (A) %zu (B); from the definition: %zu", da_diff, db_diff, ref_diff));
}

// ---- merge_experts ------------------------------------------------------------------------------

void test_merge(const HostBank& h, int32_t n, pf_layout layout) {
  const bool in_out = layout == PF_LAYOUT_IN_OUT;
  const std::string name = fmt("merge_experts %s E=%d r=%d%s din=%d dout=%d n=%d %s", dtype_name(h.dt), h.E, h.r,
                               h.ranks[1] != h.r ? " (mixed ranks)" : "", h.din, h.dout, n, in_out ? "in_out" : "out_in");
  std::vector<int32_t> ids(n);
  for (int32_t j = 0; j < n; ++j) ids[j] = j == 2 ? -1 : (int32_t)(g_rng() % h.E);  // repeats allowed
  std::vector<float> w = make_vec(n, -1, 1), W0 = make_vec((size_t)h.din * h.dout, -1, 1), Wc = W0, Wg(W0.size());
  const std::vector<double> ref = merge_reference(h, ids, w, W0, in_out);
  pf_bank* cb = nullptr;
  pf_status cs = pf_bank_create(h.E, h.r, h.din, h.dout, h.dt, h.a_data(), h.b_data(), h.scales.data(), h.ranks.data(), &cb);
  if (!cs) cs = pf_merge_experts(cb, ids.data(), w.data(), n, Wc.data(), layout);
  pf_bank_destroy(cb);
  pf_cuda_bank* gb = nullptr;
  pf_status gs = pf_cuda_bank_create(h.E, h.r, h.din, h.dout, h.dt, h.a_data(), h.b_data(), h.scales.data(),
                                     h.ranks.data(), &gb);
  DBuf di(n * 4), dw(n * 4), dW(W0.size() * 4);
  bool ok = gs == PF_OK && upload(di, ids) && upload(dw, w) && upload(dW, W0);
  if (ok) gs = pf_cuda_merge_experts(gb, di.as<int32_t>(), dw.as<float>(), n, dW.as<float>(), layout, nullptr);
  ok = ok && gs == PF_OK && download(Wg, dW);
  pf_cuda_bank_destroy(gb);
  if (!ok) {
    report(name, false, fmt("%s: %s", pf_cuda_status_name(gs), pf_cuda_last_error()));
    return;
  }
  const double err = rel_err(Wg, ref, &W0), err_cpu = rel_err(Wc, ref, &W0), tol = merge_tolerance(ref, W0);
  report(name, cs == PF_OK && err <= tol, fmt("rel err of the update %.2e (cpu %.2e, tol %.1e)", err, err_cpu, tol));
}

// ---- errors -------------------------------------------------------------------------------------

// Same status and message as the CPU op.
void expect_same(const std::string& name, pf_status cpu, const std::string& cpu_msg, pf_status gpu) {
  const std::string gpu_msg = pf_cuda_last_error();
  report(name, cpu != PF_OK && gpu == cpu && gpu_msg == cpu_msg,
         gpu_msg == cpu_msg ? fmt("%s: %s", pf_status_name(gpu), gpu_msg.c_str())
                            : fmt("cpu %s \"%s\" vs cuda %s \"%s\"", pf_status_name(cpu), cpu_msg.c_str(),
                                  pf_cuda_status_name(gpu), gpu_msg.c_str()));
}

void test_errors() {
  const HostBank h = make_bank(6, 8, 96, 80, PF_F16, false);
  const int64_t T = 40;
  const int32_t k = 2;
  std::vector<float> x((size_t)T * h.din), y((size_t)T * h.dout, 0.0f), w = make_vec(T * k, 0.1f, 1);
  for (float& v : x) v = gauss();
  std::vector<int32_t> ids = make_ids(T, k, h.E, 0.0);
  pf_bank* cb = nullptr;
  pf_cuda_bank* gb = nullptr;
  pf_bank_create(h.E, h.r, h.din, h.dout, h.dt, h.a_data(), h.b_data(), h.scales.data(), nullptr, &cb);
  if (pf_cuda_bank_create(h.E, h.r, h.din, h.dout, h.dt, h.a_data(), h.b_data(), h.scales.data(), nullptr, &gb)) {
    report("errors: bank", false, pf_cuda_last_error());
    pf_bank_destroy(cb);
    return;
  }
  DBuf dx(x.size() * 4), dy(y.size() * 4), di(ids.size() * 4), dw(w.size() * 4);
  upload(dx, x);
  upload(dy, y);
  upload(dw, w);

  for (const char* path : kMoePaths) {
    use_path(path);
    std::vector<int32_t> bad = ids;
    bad[7] = h.E;  // out of range
    bad[30] = -3;
    upload(di, bad);
    pf_status c = pf_lora_moe(cb, x.data(), T, bad.data(), w.data(), k, y.data());
    std::string cm = pf_last_error();
    expect_same(fmt("errors: lora_moe %s, expert id out of range", path), c, cm,
                pf_cuda_lora_moe(gb, dx.as<float>(), T, di.as<int32_t>(), dw.as<float>(), k, dy.as<float>(), nullptr));
    upload(di, ids);
    std::vector<float> badw = w;
    badw[11] = NAN;
    upload(dw, badw);
    c = pf_lora_moe(cb, x.data(), T, ids.data(), badw.data(), k, y.data());
    cm = pf_last_error();
    expect_same(fmt("errors: lora_moe %s, NaN weight", path), c, cm,
                pf_cuda_lora_moe(gb, dx.as<float>(), T, di.as<int32_t>(), dw.as<float>(), k, dy.as<float>(), nullptr));
    upload(dw, w);
  }
  use_path(nullptr);

  {  // topk NaN row
    std::vector<float> logits = make_vec((size_t)T * h.E, -2, 2);
    logits[5 * h.E + 2] = NAN;
    logits[9 * h.E + 1] = INFINITY;
    std::vector<int32_t> oi((size_t)T * k);
    std::vector<float> ow((size_t)T * k);
    int64_t cbad = -1, gbad = -1;
    const pf_status c = pf_topk_softmax(logits.data(), T, h.E, k, 1, oi.data(), ow.data(), &cbad);
    const std::string cm = pf_last_error();
    DBuf dl(logits.size() * 4), doi(oi.size() * 4), dow(ow.size() * 4);
    upload(dl, logits);
    const pf_status g = pf_cuda_topk_softmax(dl.as<float>(), T, h.E, k, 1, doi.as<int32_t>(), dow.as<float>(), &gbad, nullptr);
    expect_same("errors: topk_softmax, NaN and +Inf logits", c, cm, g);
    report("errors: topk_softmax reports the first bad row", gbad == cbad && gbad == 5, fmt("bad_row %lld", (long long)gbad));
  }
  {  // fold: repeated slot, slot out of range
    const int64_t B = 4, S = 6;
    std::vector<int32_t> fids = make_ids(B, k, h.E, 0.0);
    std::vector<float> fw = make_vec(B * k, -1, 1);
    std::vector<float> a((size_t)S * h.din * 16), b((size_t)S * 16 * h.dout);
    DBuf dfi(fids.size() * 4), dfw(fw.size() * 4), dsl(B * 4), da(a.size() * 4), db(b.size() * 4);
    upload(dfi, fids);
    upload(dfw, fw);
    // (both: the repeat at index 1 comes before the slot out of range at 2)
    const std::vector<int32_t> dup = {3, 1, 3, 0}, range = {3, 1, 6, 0}, both = {1, 1, 6, 0};
    for (const auto* sl : {&dup, &range, &both}) {
      upload(dsl, *sl);
      const pf_status c = pf_fold_experts(cb, fids.data(), fw.data(), B, k, sl->data(), S, 16, a.data(), b.data());
      const std::string cm = pf_last_error();
      const pf_status g = pf_cuda_fold_experts(gb, dfi.as<int32_t>(), dfw.as<float>(), B, k, dsl.as<int32_t>(), S, 16,
                                               da.as<float>(), db.as<float>(), nullptr);
      expect_same(sl == &dup     ? "errors: fold_experts, a slot twice"
                  : sl == &range ? "errors: fold_experts, slot out of range"
                                 : "errors: fold_experts, a slot twice before one out of range",
                  c, cm, g);
    }
  }
  {  // merge: bad id
    std::vector<int32_t> mids = {1, h.E + 4};
    std::vector<float> mw = {0.5f, 0.5f}, W((size_t)h.din * h.dout, 0.0f);
    DBuf dmi(8), dmw(8), dW(W.size() * 4);
    upload(dmi, mids);
    upload(dmw, mw);
    const pf_status c = pf_merge_experts(cb, mids.data(), mw.data(), 2, W.data(), PF_LAYOUT_IN_OUT);
    const std::string cm = pf_last_error();
    expect_same("errors: merge_experts, expert id out of range", c, cm,
                pf_cuda_merge_experts(gb, dmi.as<int32_t>(), dmw.as<float>(), 2, dW.as<float>(), PF_LAYOUT_IN_OUT, nullptr));
  }
  {  // pointers: host memory, a buffer too small
    pf_status g = pf_cuda_lora_moe(gb, x.data(), T, di.as<int32_t>(), dw.as<float>(), k, dy.as<float>(), nullptr);
    report("errors: host memory for x is an argument error", g == PF_ERR_ARGUMENT && strstr(pf_cuda_last_error(), "for x"),
           pf_cuda_last_error());
    DBuf small(y.size() * 2);
    g = pf_cuda_lora_moe(gb, dx.as<float>(), T, di.as<int32_t>(), dw.as<float>(), k, small.as<float>(), nullptr);
    report("errors: a y allocation half the size needed is an argument error",
           g == PF_ERR_ARGUMENT && strstr(pf_cuda_last_error(), "for y"), pf_cuda_last_error());
  }
  {  // deferred checks: the op returns once queued, pf_cuda_check reports and clears the fault
    std::vector<int32_t> bad = ids;
    bad[3] = 99;
    upload(di, bad);
    pf_cuda_set_option("sync_checks", 0);
    const pf_status g = pf_cuda_lora_moe(gb, dx.as<float>(), T, di.as<int32_t>(), dw.as<float>(), k, dy.as<float>(), nullptr);
    const pf_status c1 = pf_cuda_check(nullptr);
    const std::string m1 = pf_cuda_last_error();
    const pf_status c2 = pf_cuda_check(nullptr);
    pf_cuda_set_option("sync_checks", 1);
    report("errors: sync_checks 0 defers the fault to pf_cuda_check, once",
           g == PF_OK && c1 == PF_ERR_ARGUMENT && c2 == PF_OK && m1.find("index 3") != std::string::npos, m1);
    upload(di, ids);
  }
  {  // the context survived all of the above
    upload(dy, y);
    const pf_status g = pf_cuda_lora_moe(gb, dx.as<float>(), T, di.as<int32_t>(), dw.as<float>(), k, dy.as<float>(), nullptr);
    report("errors: the device still works afterwards", g == PF_OK && pf_cuda_device_synchronize() == PF_OK,
           pf_cuda_last_error());
  }
  {  // plain argument checks, as on the CPU
    const pf_status c = pf_lora_moe(cb, x.data(), T, ids.data(), w.data(), h.E + 1, y.data());
    const std::string cm = pf_last_error();
    expect_same("errors: lora_moe k > experts", c, cm,
                pf_cuda_lora_moe(gb, dx.as<float>(), T, di.as<int32_t>(), dw.as<float>(), h.E + 1, dy.as<float>(), nullptr));
  }
  pf_bank_destroy(cb);
  pf_cuda_bank_destroy(gb);
}

// ---- the library without a device ---------------------------------------------------------------

void test_api_table() {
  const pf_cuda_api* api = pf_cuda_get_api(PF_CUDA_ABI_VERSION);
  report("pf_cuda_get_api: the table for this ABI, none for another",
         api && api->abi_version == PF_CUDA_ABI_VERSION && api->size == sizeof(pf_cuda_api) &&
             api->lora_moe == pf_cuda_lora_moe && api->merge_experts == pf_cuda_merge_experts &&
             pf_cuda_get_api(PF_CUDA_ABI_VERSION + 1) == nullptr);
  int64_t v = -5;
  const bool opts = pf_cuda_get_option("sync_checks", &v) == PF_OK && v == 1 &&
                    pf_cuda_set_option("sync_checks", 2) == PF_ERR_ARGUMENT &&
                    pf_cuda_set_option("no_such_option", 1) == PF_ERR_ARGUMENT &&
                    pf_cuda_get_option("moe_fused_max_tokens", &v) == PF_OK && v == 0 &&
                    pf_cuda_set_option("moe_fused_max_tokens", -1) == PF_ERR_ARGUMENT &&
                    pf_cuda_get_option("moe_dense_max_columns", &v) == PF_OK && v == 0 &&
                    pf_cuda_set_option("moe_dense_max_columns", 64) == PF_OK &&
                    pf_cuda_get_option("moe_dense_max_columns", &v) == PF_OK && v == 64 &&
                    pf_cuda_set_option("moe_dense_max_columns", 0) == PF_OK &&
                    pf_cuda_set_option("moe_dense_max_columns", -1) == PF_ERR_ARGUMENT;
  report("options: defaults and argument checks", opts, pf_cuda_last_error());
  printf("build: %s\n", pf_cuda_build_info());
}

void test_no_device() {
  void* p = nullptr;
  const pf_status m = pf_cuda_malloc(1024, &p);
  report("no device: pf_cuda_malloc fails with a backend error, not a crash", m == PF_ERR_BACKEND && p == nullptr,
         pf_cuda_last_error());
  pf_cuda_bank* b = nullptr;
  const float a[4] = {1, 2, 3, 4};
  const pf_status s = pf_cuda_bank_create(1, 1, 2, 2, PF_F32, a, a, nullptr, nullptr, &b);
  report("no device: pf_cuda_bank_create fails with a backend error", s == PF_ERR_BACKEND && b == nullptr,
         pf_cuda_last_error());
  const pf_status l = pf_cuda_lora_moe(nullptr, nullptr, 1, nullptr, nullptr, 1, nullptr, nullptr);
  report("no device: argument checks still come first", l == PF_ERR_ARGUMENT, pf_cuda_last_error());
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t seed = (uint64_t)std::chrono::steady_clock::now().time_since_epoch().count();
  bool quick = false;  // --quick: only shapes with din * dout <= 2^18, for compute-sanitizer runs
  for (int i = 1; i < argc; ++i) {
    if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc) seed = strtoull(argv[i + 1], nullptr, 10);
    if (strcmp(argv[i], "--quick") == 0) quick = true;
  }
  const auto small = [&](int64_t din, int64_t dout) { return !quick || din * dout <= (1 << 18); };
  g_rng.seed(seed);
  pf_cuda_get_option("moe_prefill_min_tokens", &g_prefill_default);
  pf_cuda_get_option("moe_fused_max_tokens", &g_fused_default);
  pf_cuda_get_option("moe_dense_max_columns", &g_dense_default);
  printf("personafuse CUDA kernels test, seed %llu (repeat with --seed %llu)%s\n", (unsigned long long)seed,
         (unsigned long long)seed, quick ? "; --quick: small shapes only" : "");
  test_api_table();

  int32_t devices = 0;
  const pf_status ds = pf_cuda_device_count(&devices);
  const std::string why = pf_cuda_last_error();
  report("pf_cuda_device_count answers without a crash", ds == PF_OK, fmt("%d device(s)", devices));
  if (devices == 0) {
    test_no_device();
    printf("skipped: no CUDA device (%s)\n", why.c_str());
    printf("%d passed, %d failed\n", g_pass, g_fail);
    return g_fail ? 1 : 0;
  }
  char name[256];
  int32_t ma = 0, mi = 0;
  pf_cuda_device_name(0, name, sizeof name);
  pf_cuda_device_capability(0, &ma, &mi);
  printf("device 0: %s, compute capability %d.%d; CPU kernels: %s, %d threads\n", name, ma, mi, pf_simd_name(),
         pf_num_threads());

  // topk_softmax: E from 1 to 1024 (every lane-group width), k up to E
  for (int32_t E : {1, 3, 8, 10, 17, 64, 100, 256, 257, 600, 1024})
    for (int32_t k : {1, 2, 8, E})
      if (k <= E && (k != E || E <= 64)) test_topk(E > 256 ? 97 : 1000, E, k, (int)(g_rng() % 2), E % 2 == 1);
  test_topk(3, 1024, 1024, 1, true);
  test_topk(1, 10, 2, 1, false);

  // lora_moe: every path, all dtypes, odd shapes, mixed ranks, misaligned rows
  const MoeShape shapes[] = {
      {3, 5, 67, 33, 7, 2, false},      {10, 16, 4096, 4096, 1, 2, false}, {10, 16, 256, 384, 64, 2, false},
      {64, 16, 2049, 1027, 300, 2, false}, {5, 40, 130, 250, 100, 3, true}, {4, 130, 96, 80, 64, 1, false},
      {6, 8, 1, 1, 40, 6, false},       {2, 1, 17, 9, 33, 2, true},        {10, 16, 1024, 1024, 512, 2, false},
      {8, 64, 300, 200, 129, 2, true},  {12, 128, 160, 96, 70, 4, false}};
  for (const MoeShape& s : shapes) {
    if (!small(s.din, s.dout)) continue;
    for (pf_dtype dt : {PF_F32, PF_F16, PF_BF16})
      for (const char* path : kMoePaths) {
        if (dt == PF_F32 && (strcmp(path, "grouped") == 0 || strcmp(path, "dense") == 0)) continue;  // f32: no tensor cores
        test_moe(s, dt, path, s.din % 4 == 0 && (s.T % 2 == 1));
      }
  }

  // fold_experts: special values (bit-exact conversions), odd R, slots, mixed ranks
  for (pf_dtype dt : {PF_F32, PF_F16, PF_BF16}) {
    test_fold(special_bank(dt), 3, 2, 8, false, 3, " special values");
    test_fold(make_bank(5, 4, 33, 19, dt, true), 3, 2, 10, true, 6, "");
    if (small(4096, 4096)) test_fold(make_bank(10, 16, 4096, 4096, dt, false), 8, 2, 32, false, 8, "");
    test_fold(make_bank(7, 6, 129, 65, dt, true), 5, 3, 21, true, 9, "");
  }
  // merge_experts: both layouts, odd shapes, mixed ranks, a -1 id and repeats
  for (pf_dtype dt : {PF_F32, PF_F16, PF_BF16})
    for (pf_layout layout : {PF_LAYOUT_IN_OUT, PF_LAYOUT_OUT_IN}) {
      test_merge(make_bank(4, 5, 67, 33, dt, true), 3, layout);
      if (small(1024, 768)) test_merge(make_bank(10, 16, 1024, 768, dt, false), 2, layout);
      test_merge(make_bank(6, 33, 130, 257, dt, true), 5, layout);
    }
  test_errors();

  printf("%d passed, %d failed\n", g_pass, g_fail);
  return g_fail ? 1 : 0;
}
