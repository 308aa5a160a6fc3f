// What the kernel test programs share (test_gpu.cc on a device, emu_*_test.cc on the CPU):
// PASS/FAIL lines, seeded random inputs, banks in PEFT layout with their exact stored values,
// routing, the relative error against a float64 reference, and the references of the ops.
#ifndef PF_TESTS_TEST_SUPPORT_H
#define PF_TESTS_TEST_SUPPORT_H

#include <math.h>
#include <stdarg.h>
#include <stdio.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "../common/numeric.h"
#include "personafuse.h"

namespace pf_test {

inline int g_pass = 0, g_fail = 0;

inline std::string fmt(const char* f, ...) __attribute__((format(printf, 1, 2)));
inline std::string fmt(const char* f, ...) {
  char buf[1024];
  va_list a;
  va_start(a, f);
  vsnprintf(buf, sizeof buf, f, a);
  va_end(a);
  return buf;
}

inline void report(const std::string& name, bool ok, const std::string& detail = "") {
  (ok ? g_pass : g_fail)++;
  printf("%s %s%s%s\n", ok ? "PASS" : "FAIL", name.c_str(), detail.empty() ? "" : "  ", detail.c_str());
  fflush(stdout);
}

inline const char* dtype_name(pf_dtype d) { return d == PF_F32 ? "f32" : d == PF_F16 ? "f16" : "bf16"; }
inline uint32_t fbits(float f) { return pf::f32_to_bits(f); }

inline std::mt19937_64 g_rng;
inline float uni(float lo, float hi) { return std::uniform_real_distribution<float>(lo, hi)(g_rng); }
inline float gauss() { return std::normal_distribution<float>(0.0f, 1.0f)(g_rng); }

// A bank in PEFT layout; `a`/`b` hold the exact values of the stored weights.
struct HostBank {
  int32_t E, r, din, dout;
  pf_dtype dt;
  std::vector<float> a, b, scales;
  std::vector<uint16_t> a16, b16;
  std::vector<int32_t> ranks;
  const void* a_data() const { return dt == PF_F32 ? (const void*)a.data() : (const void*)a16.data(); }
  const void* b_data() const { return dt == PF_F32 ? (const void*)b.data() : (const void*)b16.data(); }
};

inline void store(pf_dtype dt, std::vector<float>& v, std::vector<uint16_t>& bits) {
  if (dt == PF_F32) return;
  bits.resize(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    bits[i] = dt == PF_F16 ? pf::f32_to_f16(v[i]) : pf::f32_to_bf16(v[i]);
    v[i] = dt == PF_F16 ? pf::f16_to_f32(bits[i]) : pf::bf16_to_f32(bits[i]);
  }
}

inline HostBank make_bank(int32_t E, int32_t r, int32_t din, int32_t dout, pf_dtype dt, bool hetero) {
  HostBank h{E, r, din, dout, dt, {}, {}, {}, {}, {}, {}};
  h.a.resize((size_t)E * r * din);
  h.b.resize((size_t)E * dout * r);
  const float sa = 1.0f / sqrtf((float)din);
  for (float& v : h.a) v = gauss() * sa;
  for (float& v : h.b) v = gauss() * 0.5f;
  store(dt, h.a, h.a16);
  store(dt, h.b, h.b16);
  h.scales.resize(E);
  for (float& s : h.scales) s = uni(0.25f, 2.0f);
  h.ranks.assign(E, r);
  if (hetero)
    for (int32_t e = 1; e < E; ++e) h.ranks[e] = (int32_t)(g_rng() % (r + 1));  // expert 0 keeps full rank
  return h;
}

// k distinct experts per row, some slots -1.
inline std::vector<int32_t> make_ids(int64_t T, int32_t k, int32_t E, double p_skip) {
  std::vector<int32_t> ids((size_t)T * k), perm(E);
  for (int64_t t = 0; t < T; ++t) {
    for (int32_t e = 0; e < E; ++e) perm[e] = e;
    std::shuffle(perm.begin(), perm.end(), g_rng);
    for (int32_t j = 0; j < k; ++j) ids[t * k + j] = uni(0, 1) < p_skip ? -1 : perm[j];
  }
  return ids;
}

inline std::vector<float> make_vec(size_t n, float lo, float hi) {
  std::vector<float> v(n);
  for (float& x : v) x = uni(lo, hi);
  return v;
}

// ‖got − ref‖ / ‖ref − base‖ (base: what was there before the op; NaN when any got is NaN).
inline double rel_err(const std::vector<float>& got, const std::vector<double>& ref, const std::vector<float>* base) {
  double num = 0, den = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (isnan(got[i])) return NAN;
    num += (got[i] - ref[i]) * (got[i] - ref[i]);
    const double d = ref[i] - (base ? (*base)[i] : 0.0);
    den += d * d;
  }
  return den > 0 ? sqrt(num / den) : sqrt(num);
}

// ---- lora_moe ---------------------------------------------------------------------------------

struct MoeShape {
  int32_t E, r, din, dout;
  int64_t T;
  int32_t k;
  bool hetero;
};

// y0 + the lora_moe sum in float64 from the bank's stored values; ids < 0 are skipped.
inline std::vector<double> moe_reference(const HostBank& h, const std::vector<float>& x, int64_t T,
                                         const std::vector<int32_t>& ids, const std::vector<float>& w, int32_t k,
                                         const std::vector<float>& y0) {
  std::vector<double> y(y0.begin(), y0.end()), hq(h.r);
  for (int64_t t = 0; t < T; ++t)
    for (int32_t j = 0; j < k; ++j) {
      const int32_t e = ids[t * k + j];
      if (e < 0) continue;
      const double c = (double)w[t * k + j] * h.scales[e];
      for (int32_t q = 0; q < h.ranks[e]; ++q) {
        double s = 0;
        for (int32_t i = 0; i < h.din; ++i) s += (double)h.a[((size_t)e * h.r + q) * h.din + i] * x[t * h.din + i];
        hq[q] = c * s;
      }
      for (int32_t o = 0; o < h.dout; ++o) {
        double s = 0;
        for (int32_t q = 0; q < h.ranks[e]; ++q) s += (double)h.b[((size_t)e * h.dout + o) * h.r + q] * hq[q];
        y[t * h.dout + o] += s;
      }
    }
  return y;
}

// ---- topk_softmax -------------------------------------------------------------------------------

// Logits [T, E]: N(0, 3²), or with ties: small integers and -Infinity (1 in 16); every row holds
// a finite value.
inline std::vector<float> make_logits(int64_t T, int32_t E, bool ties) {
  std::vector<float> logits((size_t)T * E);
  for (float& l : logits) {
    const unsigned r = g_rng() % 16;
    l = ties ? (r == 0 ? -INFINITY : (float)(g_rng() % 6)) : gauss() * 3.0f;
  }
  for (int64_t t = 0; t < T; ++t) logits[t * E + g_rng() % E] = 1.0f;
  return logits;
}

// topk_softmax in float64 over rows with a finite value: the k largest logits (ties to the
// lower id) and their probabilities, renormalised over the k when asked.
inline void topk_reference(const std::vector<float>& logits, int64_t T, int32_t E, int32_t k, int renorm,
                           std::vector<int32_t>* ids, std::vector<double>* w) {
  ids->assign((size_t)T * k, 0);
  w->assign((size_t)T * k, 0.0);
  std::vector<int32_t> order(E);
  for (int64_t t = 0; t < T; ++t) {
    const float* l = &logits[t * E];
    double m = -INFINITY, sum = 0, kept = 0;
    for (int32_t e = 0; e < E; ++e) m = std::max(m, (double)l[e]);
    for (int32_t e = 0; e < E; ++e) sum += exp(l[e] - m);
    for (int32_t e = 0; e < E; ++e) order[e] = e;
    std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return pf::topk_before(l[a], a, l[b], b); });
    for (int32_t j = 0; j < k; ++j) {
      (*ids)[t * k + j] = order[j];
      kept += (*w)[t * k + j] = exp(l[order[j]] - m) / sum;
    }
    if (renorm)
      for (int32_t j = 0; j < k; ++j) (*w)[t * k + j] /= kept;
  }
}

// ---- fold_experts -------------------------------------------------------------------------------

// A bank of special values (subnormals, extremes, signed zeros) with scales 1: fold copies them,
// so every conversion on the way must agree with numeric.h bit for bit.
inline HostBank special_bank(pf_dtype dt) {
  HostBank h = make_bank(3, 4, 37, 21, dt, false);
  const uint16_t f16[] = {0x0001, 0x03ff, 0x0400, 0x7bff, 0x8001, 0xfbff, 0x3c00, 0x0000, 0x8000, 0x3555, 0x83ff};
  const uint16_t bf16[] = {0x0001, 0x007f, 0x0080, 0x7f7f, 0xff7f, 0x8001, 0x3f80, 0x0000, 0x8000, 0x3eab, 0x807f};
  if (dt == PF_F32) {
    const float f32[] = {1e-45f, 1.17549435e-38f, 3.4028235e38f, -0.0f, 0.0f, -1e-40f, 1.0f / 3};
    for (size_t i = 0; i < h.a.size(); ++i) h.a[i] = f32[g_rng() % 7];
    for (size_t i = 0; i < h.b.size(); ++i) h.b[i] = f32[g_rng() % 7];
  } else {
    const uint16_t* sp = dt == PF_F16 ? f16 : bf16;
    for (size_t i = 0; i < h.a16.size(); ++i) h.a16[i] = sp[g_rng() % 11];
    for (size_t i = 0; i < h.b16.size(); ++i) h.b16[i] = sp[g_rng() % 11];
    for (size_t i = 0; i < h.a.size(); ++i) h.a[i] = dt == PF_F16 ? pf::f16_to_f32(h.a16[i]) : pf::bf16_to_f32(h.a16[i]);
    for (size_t i = 0; i < h.b.size(); ++i) h.b[i] = dt == PF_F16 ? pf::f16_to_f32(h.b16[i]) : pf::bf16_to_f32(h.b16[i]);
  }
  h.scales.assign(h.E, 1.0f);
  return h;
}

// fold_experts by its definition, bit for bit (each B value is one f32 product, (w s) b, as the
// ops compute it): the slots the requests name (slots null: request b in slot b) are written
// into a [S, din, R] and b [S, R, dout]; the others keep what they held. What the CUDA op
// writes beside recording a fault: nothing for a slot outside [0, S), zero columns for an id
// outside [0, E) or a non-finite weight.
inline void fold_reference(const HostBank& h, const std::vector<int32_t>& ids, const std::vector<float>& w, int64_t B,
                           int32_t k, const int32_t* slots, int64_t S, int32_t R, std::vector<float>* a,
                           std::vector<float>* b) {
  for (int64_t r = 0; r < B; ++r) {
    const int64_t s = slots ? slots[r] : r;
    if (s < 0 || s >= S) continue;
    for (int32_t c = 0; c < R; ++c) {
      const int32_t j = c / h.r, q = c % h.r, e = j < k ? ids[r * k + j] : -1;
      const bool live = e >= 0 && e < h.E && isfinite(w[r * k + j]) && q < h.ranks[e];
      for (int32_t i = 0; i < h.din; ++i) (*a)[((size_t)s * h.din + i) * R + c] = live ? h.a[((size_t)e * h.r + q) * h.din + i] : 0.0f;
      for (int32_t o = 0; o < h.dout; ++o)
        (*b)[((size_t)s * R + c) * h.dout + o] = live ? (w[r * k + j] * h.scales[e]) * h.b[((size_t)e * h.dout + o) * h.r + q] : 0.0f;
    }
  }
}

// ---- merge_experts ------------------------------------------------------------------------------

// W0 + Σ_j w_j s_e (B_e A_e)ᵀ (in_out, W [din, dout]) or + Σ_j w_j s_e B_e A_e (out_in,
// W [dout, din]) in float64; ids outside [0, E) and non-finite weights are skipped.
inline std::vector<double> merge_reference(const HostBank& h, const std::vector<int32_t>& ids, const std::vector<float>& w,
                                           const std::vector<float>& W0, bool in_out) {
  std::vector<double> ref(W0.begin(), W0.end());
  for (size_t j = 0; j < ids.size(); ++j) {
    const int32_t e = ids[j];
    if (e < 0 || e >= h.E || !isfinite(w[j])) continue;
    const double c = (double)w[j] * h.scales[e];
    for (int32_t i = 0; i < h.din; ++i)
      for (int32_t o = 0; o < h.dout; ++o) {
        double s = 0;
        for (int32_t q = 0; q < h.ranks[e]; ++q)
          s += (double)h.a[((size_t)e * h.r + q) * h.din + i] * h.b[((size_t)e * h.dout + o) * h.r + q];
        ref[in_out ? (size_t)i * h.dout + o : (size_t)o * h.din + i] += c * s;
      }
  }
  return ref;
}

// merge's tolerance on the update's relative error: 1e-5, plus what rounding W' to f32 costs
// (2^-24 |W'| an element). Against an update small beside W that rounding is all the error
// there is, so a fixed 1e-5 alone would fail exact kernels on small shapes.
inline double merge_tolerance(const std::vector<double>& ref, const std::vector<float>& W0) {
  double nw = 0, nu = 0;
  for (size_t i = 0; i < ref.size(); ++i) nw += ref[i] * ref[i], nu += (ref[i] - W0[i]) * (ref[i] - W0[i]);
  return 1e-5 + ldexp(1.0, -24) * sqrt(nw / nu);
}

}  // namespace pf_test
#endif
