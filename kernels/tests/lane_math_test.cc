// Checks, on the CPU, the per-thread arithmetic the CUDA kernels run (kernels/common/*.h):
// conversions against known bits and exhaustively, dequantisation, the fma dot chain, the warp
// butterfly emulated over 32 host lanes, and the top-k selection of topk_softmax.cu replayed
// lane by lane against a sort. Prints PASS/FAIL per check; exit code 1 on any failure.
//   g++ -std=c++17 -O2 -Ikernels/include kernels/tests/lane_math_test.cc -o lane_math_test
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "../common/lane_math.h"
#include "test_support.h"

namespace {

int g_failures = 0;
int g_checks = 0;

void report(const std::string& name, bool ok, const std::string& detail = "") {
  ++g_checks;
  if (!ok) ++g_failures;
  printf("%s %s%s%s\n", ok ? "PASS" : "FAIL", name.c_str(), detail.empty() ? "" : ": ", detail.c_str());
}

using pf_test::fmt;

uint32_t bits(float f) { return pf::f32_to_bits(f); }

// ---- conversions ------------------------------------------------------------------------------

void test_f16_known() {
  struct Case { uint16_t h; float f; };
  const Case cases[] = {{0x3c00, 1.0f},          {0xc000, -2.0f},          {0x7bff, 65504.0f},
                        {0x0001, ldexpf(1, -24)}, {0x03ff, ldexpf(1023, -24)}, {0x0400, ldexpf(1, -14)},
                        {0x8000, -0.0f},         {0x7c00, INFINITY},       {0xfc00, -INFINITY},
                        {0x3555, 0.333251953125f}};
  std::string bad;
  for (const Case& c : cases) {
    if (bits(pf::half_to_f32(c.h)) != bits(c.f)) bad += fmt(" decode %04x", c.h);
    if (pf::f32_to_half(c.f) != c.h) bad += fmt(" encode %g", (double)c.f);
  }
  if (!isnan(pf::half_to_f32(0x7e00)) || !isnan(pf::half_to_f32(0xfc01))) bad += " NaN decode";
  if ((pf::f32_to_half(NAN) & 0x7c00) != 0x7c00 || (pf::f32_to_half(NAN) & 0x3ff) == 0) bad += " NaN encode";
  // rounding: ties to even, overflow, underflow
  const struct { float f; uint16_t h; } rnd[] = {
      {65519.0f, 0x7bff},                  // below the halfway point to 65536
      {65520.0f, 0x7c00},                  // halfway: rounds to even = infinity
      {1.0f + ldexpf(1, -11), 0x3c00},     // tie -> even (down)
      {1.0f + 3 * ldexpf(1, -11), 0x3c02}, // tie -> even (up)
      {ldexpf(1, -25), 0x0000},            // half the smallest subnormal: tie -> 0
      {ldexpf(3, -26), 0x0001},            // 0.75 of the smallest subnormal -> 1
      {ldexpf(3, -25), 0x0002},            // 1.5 subnormals: tie -> even (2)
      {-ldexpf(1, -30), 0x8000},           // underflow keeps the sign
  };
  for (const auto& r : rnd)
    if (pf::f32_to_half(r.f) != r.h) bad += fmt(" round %a->%04x", (double)r.f, pf::f32_to_half(r.f));
  report("f16 known bits and rounding", bad.empty(), bad);
}

void test_f16_exhaustive() {
  int bad = 0;
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = pf::half_to_f32((uint16_t)h);
    const bool nan = (h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0;
    if (nan ? !isnan(f) : pf::f32_to_half(f) != h) ++bad;
    if (!nan && (double)f != (double)pf::f16_to_f32((uint16_t)h)) ++bad;
  }
  report("f16 round trip of all 65536 bit patterns", bad == 0, fmt("%d mismatches", bad));
}

void test_bf16() {
  std::string bad;
  if (bits(pf::bf16_to_f32(0x3f80)) != bits(1.0f)) bad += " decode 1";
  if (pf::f32_to_bfloat(1.0f) != 0x3f80) bad += " encode 1";
  if (pf::f32_to_bfloat(1.0f + ldexpf(1, -8)) != 0x3f80) bad += " tie down";
  if (pf::f32_to_bfloat(1.0f + 3 * ldexpf(1, -8)) != 0x3f82) bad += " tie up";
  if (pf::f32_to_bfloat(-INFINITY) != 0xff80) bad += " -inf";
  if (!isnan(pf::bf16_to_f32(pf::f32_to_bfloat(NAN)))) bad += " NaN";
  if (pf::f32_to_bfloat(3.4028235e38f) != 0x7f80) bad += " max rounds to inf";
  int trip = 0;
  for (uint32_t h = 0; h < 65536; ++h) {
    const bool nan = (h & 0x7f80) == 0x7f80 && (h & 0x7f) != 0;
    if (!nan && pf::f32_to_bfloat(pf::bf16_to_f32((uint16_t)h)) != h) ++trip;
  }
  if (trip) bad += fmt(" %d round-trip mismatches", trip);
  report("bf16 known bits, rounding and round trip", bad.empty(), bad);
}

// ---- dequantise and dot -----------------------------------------------------------------------

template <int DT>
int check_dequant(std::mt19937& rng) {
  int bad = 0;
  for (int it = 0; it < 20000; ++it) {
    uint32_t w[4];
    for (uint32_t& x : w) x = rng();
    float out[8];
    pf::dequant16<DT>(w, out);
    unsigned char bytes[16];
    memcpy(bytes, w, 16);
    for (int i = 0; i < pf::Vec16<DT>::N; ++i) {
      float ref;  // element i of the same 16 bytes, in memory order
      if (DT == pf::kF32) {
        memcpy(&ref, bytes + 4 * i, 4);
      } else {
        uint16_t h;
        memcpy(&h, bytes + 2 * i, 2);
        ref = DT == pf::kF16 ? pf::f16_to_f32(h) : pf::bf16_to_f32(h);
      }
      if (bits(out[i]) != bits(ref) && !(isnan(out[i]) && isnan(ref))) ++bad;
    }
  }
  return bad;
}

void test_dequant() {
  std::mt19937 rng(1);
  const int a = check_dequant<pf::kF32>(rng), b = check_dequant<pf::kF16>(rng), c = check_dequant<pf::kBF16>(rng);
  report("dequant16 f32/f16/bf16 vs numeric.h per element", a + b + c == 0, fmt("%d %d %d mismatches", a, b, c));
  // the element order of a 16-byte load is memory order (little endian)
  const uint16_t h[8] = {0x3c00, 0x4000, 0x4200, 0x4400, 0x4500, 0x4600, 0x4700, 0x4800};  // 1..8
  uint32_t w[4];
  memcpy(w, h, 16);
  float out[8];
  pf::dequant16<pf::kF16>(w, out);
  bool ok = true;
  for (int i = 0; i < 8; ++i) ok &= out[i] == (float)(i + 1);
  report("dequant16 keeps memory order", ok);
}

void test_fma_dot() {
  std::mt19937 rng(2);
  std::uniform_real_distribution<float> u(-1, 1);
  double worst = 0;
  bool exact = true;
  for (int it = 0; it < 10000; ++it) {
    float a[8], b[8];
    for (int i = 0; i < 8; ++i) a[i] = u(rng), b[i] = u(rng);
    const float acc0 = u(rng);
    const float got = pf::fma_dot<8>(acc0, a, b);
    float seq = acc0;
    double ref = acc0, mag = fabs(acc0);
    for (int i = 0; i < 8; ++i) {
      seq = fmaf(a[i], b[i], seq);
      ref += (double)a[i] * b[i];
      mag += fabs((double)a[i] * b[i]);
    }
    exact &= bits(got) == bits(seq);
    worst = std::max(worst, fabs(got - ref) / mag);
  }
  report("fma_dot: the fixed fma chain, within 8 ulp of float64", exact && worst < 8 * ldexp(1, -24),
         fmt("worst relative error %.3g", worst));
}

// ---- warp butterfly, emulated over 32 host lanes ---------------------------------------------

// One butterfly all-reduce over groups of `width` lanes: what warp.cuh's group_* do with
// __shfl_xor_sync(mask, v, offset, width), partner = lane ^ offset.
template <class T, class F>
void butterfly(T* lanes, int width, F combine) {
  for (int off = width >> 1; off > 0; off >>= 1) {
    T next[32];
    for (int l = 0; l < 32; ++l) {
      next[l] = lanes[l];
      combine(&next[l], lanes[l ^ off]);
    }
    std::copy(next, next + 32, lanes);
  }
}

void test_butterfly_sum_max() {
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(-100, 100);
  bool same = true, maxok = true;
  double worst = 0;
  for (int it = 0; it < 2000; ++it)
    for (int width = 1; width <= 32; width <<= 1) {
      float s[32], m[32];
      for (int l = 0; l < 32; ++l) s[l] = m[l] = u(rng) * (it % 2 ? 1e-3f : 1.0f);
      float in[32];
      std::copy(s, s + 32, in);
      butterfly(s, width, [](float* a, float b) { *a = pf::combine_sum(*a, b); });
      butterfly(m, width, [](float* a, float b) { *a = pf::combine_max(*a, b); });
      for (int g0 = 0; g0 < 32; g0 += width) {
        double ref = 0, mag = 0;
        float mx = -INFINITY;
        for (int l = g0; l < g0 + width; ++l) ref += in[l], mag += fabs(in[l]), mx = std::max(mx, in[l]);
        for (int l = g0; l < g0 + width; ++l) {
          same &= bits(s[l]) == bits(s[g0]);
          maxok &= m[l] == mx;
        }
        worst = std::max(worst, fabs(s[g0] - ref) / mag);
      }
    }
  report("butterfly sum: every lane bit-identical, within log2(32) ulp of float64", same && worst < 5 * ldexp(1, -24),
         fmt("worst relative error %.3g", worst));
  report("butterfly max: exact on every lane", maxok);
}

struct Cand {
  float v;
  int32_t id;
};

void test_butterfly_best() {
  std::mt19937 rng(4);
  bool ok = true;
  for (int it = 0; it < 5000; ++it)
    for (int width = 1; width <= 32; width <<= 1) {
      Cand c[32], in[32];
      for (int l = 0; l < 32; ++l) {
        const int r = rng() % 8;  // many ties, -inf and "no candidate"
        in[l] = {r == 0 ? -INFINITY : r == 1 ? -INFINITY : (float)(rng() % 4), r == 1 ? pf::kNoId : (int32_t)(rng() % 64)};
        c[l] = in[l];
      }
      butterfly(c, width, [](Cand* a, Cand b) { pf::combine_best(&a->v, &a->id, b.v, b.id); });
      for (int g0 = 0; g0 < 32; g0 += width) {
        Cand best{-INFINITY, pf::kNoId};
        for (int l = g0; l < g0 + width; ++l)
          if (pf::topk_before(in[l].v, in[l].id, best.v, best.id)) best = in[l];
        for (int l = g0; l < g0 + width; ++l) ok &= bits(c[l].v) == bits(best.v) && c[l].id == best.id;
      }
    }
  report("butterfly best-of: every lane holds the sequential best (ties to the lower id)", ok);
}

// ---- top-k selection as topk_softmax.cu runs it -----------------------------------------------

// The kernel's selection for one row, lane by lane: G lanes, lane g holds experts g + v*G.
std::vector<int32_t> gpu_topk(const std::vector<float>& l, int k) {
  const int E = (int)l.size(), G = pf::topk_group_lanes(E);
  constexpr int VMAX = 32;
  float vals[32][VMAX];
  uint32_t taken[32] = {0};
  int n[32];
  for (int g = 0; g < G; ++g) {
    n[g] = g < E ? (E - 1 - g) / G + 1 : 0;
    for (int v = 0; v < VMAX; ++v) vals[g][v] = v < n[g] ? l[g + v * G] : -INFINITY;
  }
  std::vector<int32_t> ids;
  for (int j = 0; j < k; ++j) {
    Cand c[32];
    for (int g = 0; g < 32; ++g) c[g] = {-INFINITY, pf::kNoId};
    for (int g = 0; g < G; ++g) pf::lane_best<VMAX>(vals[g], taken[g], n[g], g, G, &c[g].v, &c[g].id);
    butterfly(c, G, [](Cand* a, Cand b) { pf::combine_best(&a->v, &a->id, b.v, b.id); });
    const int32_t bi = c[0].id;
    for (int g = 0; g < G; ++g) {
      if (c[g].id != bi) return {};  // lanes disagree: a failure
      if (bi % G == g) taken[g] |= 1u << (bi / G);
    }
    ids.push_back(bi);
  }
  return ids;
}

void test_topk_selection() {
  std::mt19937 rng(5);
  int bad = 0, bad_insert = 0, cases = 0;
  const int sizes[] = {1, 2, 3, 7, 8, 9, 10, 16, 17, 63, 64, 65, 100, 255, 256, 257, 511, 512, 513, 1000, 1023, 1024};
  for (int E : sizes)
    for (int rep = 0; rep < 6; ++rep) {
      std::vector<float> l(E);
      for (float& x : l) {
        const int r = rng() % 10;
        x = r == 0 ? -INFINITY : rep % 2 ? (float)(rng() % 5) : std::uniform_real_distribution<float>(-8, 8)(rng);
      }
      std::vector<int32_t> order(E);
      for (int e = 0; e < E; ++e) order[e] = e;
      std::stable_sort(order.begin(), order.end(),
                       [&](int32_t a, int32_t b) { return pf::topk_before(l[a], a, l[b], b); });
      const int ks[] = {1, 2, std::min(E, 8), E};
      for (int k : ks) {
        if (k > E) continue;
        ++cases;
        const std::vector<int32_t> got = gpu_topk(l, k);
        if (got != std::vector<int32_t>(order.begin(), order.begin() + k)) ++bad;
        if (k <= 32) {  // the CPU kernel's insertion list
          float vals[32];
          int32_t ids[32];
          int cnt = 0;
          for (int e = 0; e < E; ++e) cnt = pf::topk_insert(vals, ids, cnt, k, l[e], e);
          if (std::vector<int32_t>(ids, ids + k) != std::vector<int32_t>(order.begin(), order.begin() + k))
            ++bad_insert;
        }
      }
    }
  report("top-k rounds over lane groups (E = 1..1024, any k) vs a stable sort", bad == 0,
         fmt("%d of %d cases differ", bad, cases));
  report("topk_insert vs a stable sort", bad_insert == 0, fmt("%d cases differ", bad_insert));
  bool groups = true;
  for (int E = 1; E <= 1024; ++E) {
    const int G = pf::topk_group_lanes(E), per = (E + G - 1) / G;
    groups &= (G & (G - 1)) == 0 && G <= 32 && per <= 32 && (G == 32 || per <= 8);
  }
  report("topk_group_lanes: a power of two, <= 32 values per lane for every E <= 1024", groups);
}

// ---- hi/lo split and pitch --------------------------------------------------------------------

// Worst |hi + lo - x| (relative to |x|, or absolute) over random x with |x| in [lo_mag, hi_mag].
template <int DT>
double split_error(std::mt19937& rng, double lo_mag, double hi_mag, bool absolute) {
  double worst = 0;
  for (int it = 0; it < 200000; ++it) {
    const double m = exp(std::uniform_real_distribution<double>(log(lo_mag), log(hi_mag))(rng));
    const float x = (float)(rng() % 2 ? m : -m);
    uint16_t hi, lo;
    pf::split_hi_lo<DT>(x, &hi, &lo);
    const double sum = (double)pf::elem16_to_f32<DT>(hi) + pf::elem16_to_f32<DT>(lo);
    worst = std::max(worst, fabs(sum - x) / (absolute ? 1.0 : fabs((double)x)));
  }
  return worst;
}

void test_split() {
  std::mt19937 rng(6);
  // f16: 22 bits from 2^-3 up; below, lo is subnormal and the error stays under 2^-25 absolute
  const double f16 = split_error<pf::kF16>(rng, 0.125, 6e4, false);
  const double f16s = split_error<pf::kF16>(rng, 1e-9, 0.125, true);
  const double bf16 = split_error<pf::kBF16>(rng, 1e-30, 1e30, false);
  report("split_hi_lo f16: hi + lo within 2^-21 relative for |x| in [2^-3, 6e4]", f16 <= ldexp(1, -21),
         fmt("worst %.3g", f16));
  report("split_hi_lo f16: within 2^-25 absolute below 2^-3", f16s <= ldexp(1, -25), fmt("worst %.3g", f16s));
  report("split_hi_lo bf16: hi + lo within 2^-16 relative (|x| in [1e-30, 1e30])", bf16 <= ldexp(1, -16),
         fmt("worst %.3g", bf16));
  // per-row scaling of the gates before the split: max |v| 2^s lands in [2^14, 2^15)
  bool scale_ok = pf::split_scale_exp(0.0f) == 0 && pf::split_scale_exp(INFINITY) == 0 && pf::split_scale_exp(NAN) == 0;
  for (int it = 0; it < 100000; ++it) {
    const float m = (float)exp(std::uniform_real_distribution<double>(-80, 80)(rng));
    const float s = ldexpf(m, pf::split_scale_exp(m));
    scale_ok &= s >= 16384.0f && s < 32768.0f && ldexpf(s, -pf::split_scale_exp(m)) == m;
  }
  report("split_scale_exp brings a row maximum into [2^14, 2^15), exactly reversible", scale_ok);
  const bool pitch = pf::pitch16(1, pf::kF16) == 8 && pf::pitch16(8, pf::kBF16) == 8 && pf::pitch16(9, pf::kF16) == 16 &&
                     pf::pitch16(1, pf::kF32) == 4 && pf::pitch16(4097, pf::kF32) == 4100;
  report("pitch16 rounds rows up to 16 bytes", pitch);
}

}  // namespace

int main() {
  test_f16_known();
  test_f16_exhaustive();
  test_bf16();
  test_dequant();
  test_fma_dot();
  test_butterfly_sum_max();
  test_butterfly_best();
  test_topk_selection();
  test_split();
  printf("%d checks, %d failed\n", g_checks, g_failures);
  return g_failures ? 1 : 0;
}
