// npm run bench:gpu — timings of libpersonafuse_cuda's ops with CUDA events.
//
// Each configuration: warm-up, then many single-call timings (event pairs), median and
// p10/p90 reported; inputs rotate over enough sets (banks, activations) that together exceed
// 128 MiB, so repeated calls do not run from L2. Beside each time: GB/s over the fewest bytes
// the op must move, TFLOP/s of useful arithmetic, and the fraction of the device-to-device copy
// bandwidth measured in the same run (bytes read + written). Checks are off while timing
// (sync_checks = 0, check_pointers = 0); one line shows their cost.
//
// Shapes: d in {4096, 8192}, r = 16, E in {10, 64}, k = 2 (topk also 8), T in {1, 16, 64, 512, 4096}, f16 and
// bf16; lora_moe on each of its paths (decode, fused, grouped; dense where E * r <= 256) at every T.
// Results: bench/results/gpu-<device>-<time>.json (--out DIR).
// --quick: T in {1, 512}; --ts 1,16,...: these T; --only lora_moe|topk_softmax|fold_merge.
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <algorithm>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "../common/numeric.h"
#include "personafuse.h"
#include "personafuse_cuda.h"

namespace {

std::string fmt(const char* f, ...) __attribute__((format(printf, 1, 2)));
std::string fmt(const char* f, ...) {
  char buf[2048];
  va_list a;
  va_start(a, f);
  vsnprintf(buf, sizeof buf, f, a);
  va_end(a);
  return buf;
}

[[noreturn]] void die(const char* what) {
  fprintf(stderr, "bench_gpu: %s failed: %s\n", what, pf_cuda_last_error());
  exit(1);
}
void ok(pf_status s, const char* what) {
  if (s != PF_OK) die(what);
}

struct DBuf {
  void* p = nullptr;
  size_t bytes = 0;
  explicit DBuf(size_t n) : bytes(n) { ok(pf_cuda_malloc(n, &p), "pf_cuda_malloc"); }
  ~DBuf() { pf_cuda_free(p); }
  DBuf(const DBuf&) = delete;
  DBuf& operator=(const DBuf&) = delete;
  template <class T>
  T* as() const { return static_cast<T*>(p); }
};
template <class T>
void upload(DBuf& d, const std::vector<T>& h) {
  ok(pf_cuda_memcpy_h2d(d.p, h.data(), h.size() * sizeof(T), nullptr), "pf_cuda_memcpy_h2d");
}

std::mt19937_64 g_rng(12345);
std::vector<float> randn(size_t n, float sd) {
  std::normal_distribution<float> d(0.0f, sd);
  std::vector<float> v(n);
  for (float& x : v) x = d(g_rng);
  return v;
}

struct Timing {
  double median_us, p10_us, p90_us;
  int runs;
};

// Times fn(i) (i = call index, for rotation) with an event pair per call.
template <class F>
Timing time_calls(F fn) {
  pf_cuda_event e0, e1;
  ok(pf_cuda_event_create(&e0), "event");
  ok(pf_cuda_event_create(&e1), "event");
  for (int i = 0; i < 5; ++i) fn(i);
  ok(pf_cuda_stream_sync(nullptr), "warm-up");
  std::vector<double> us;
  double total = 0;
  for (int i = 0; (i < 30 || total < 2e5) && i < 400; ++i) {  // at least 30 calls, up to ~0.2 s
    ok(pf_cuda_event_record(e0, nullptr), "record");
    fn(i);
    ok(pf_cuda_event_record(e1, nullptr), "record");
    float ms = 0;
    ok(pf_cuda_event_elapsed_ms(e0, e1, &ms), "elapsed");
    us.push_back(ms * 1e3);
    total += ms * 1e3;
  }
  pf_cuda_event_destroy(e0);
  pf_cuda_event_destroy(e1);
  std::sort(us.begin(), us.end());
  const size_t n = us.size();
  return {us[n / 2], us[n / 10], us[n * 9 / 10], (int)n};
}

constexpr size_t kRotateBytes = 128ull << 20;
size_t sets_for(size_t bytes_per_set, size_t max_sets) {
  return std::max<size_t>(2, std::min(max_sets, (kRotateBytes + bytes_per_set - 1) / bytes_per_set));
}

struct Result {
  std::string op, dtype, path, extra;
  int d = 0, E = 0, r = 0, k = 0;
  int64_t T = 0;
  Timing t{};
  double bytes = 0, flops = 0;
};
std::vector<Result> g_results;
double g_copy_gbps = 0;
int64_t g_prefill_default = 0, g_fused_default = 0, g_dense_default = 0;  // lora_moe's path options at start

void add(Result r) {
  const double gbps = r.bytes / (r.t.median_us * 1e3), tflops = r.flops / (r.t.median_us * 1e6);
  printf("%-14s %-4s %-8s d=%-5d E=%-3d k=%-2d T=%-5lld %-10s %9.2f us  %7.1f GB/s (%4.0f%% of copy)  %6.2f TFLOP/s\n",
         r.op.c_str(), r.dtype.c_str(), r.path.c_str(), r.d, r.E, r.k, (long long)r.T, r.extra.c_str(), r.t.median_us, gbps,
         100 * gbps / g_copy_gbps, tflops);
  fflush(stdout);
  g_results.push_back(std::move(r));
}

// Bank arrays in PEFT layout, converted to the bank dtype.
std::unique_ptr<pf_cuda_bank, void (*)(pf_cuda_bank*)> make_bank(int E, int r, int d, pf_dtype dt) {
  const std::vector<float> a = randn((size_t)E * r * d, 1.0f / sqrtf((float)d)), b = randn((size_t)E * d * r, 0.5f);
  std::vector<uint16_t> a16(a.size()), b16(b.size());
  for (size_t i = 0; i < a.size(); ++i) a16[i] = dt == PF_F16 ? pf::f32_to_f16(a[i]) : pf::f32_to_bf16(a[i]);
  for (size_t i = 0; i < b.size(); ++i) b16[i] = dt == PF_F16 ? pf::f32_to_f16(b[i]) : pf::f32_to_bf16(b[i]);
  std::vector<float> scales(E, 2.0f);
  pf_cuda_bank* bank = nullptr;
  ok(pf_cuda_bank_create(E, r, d, d, dt, a16.data(), b16.data(), scales.data(), nullptr, &bank), "pf_cuda_bank_create");
  return {bank, pf_cuda_bank_destroy};
}

std::vector<int32_t> route(int64_t T, int k, int E) {
  std::vector<int32_t> ids((size_t)T * k), perm(E);
  for (int64_t t = 0; t < T; ++t) {
    for (int e = 0; e < E; ++e) perm[e] = e;
    std::shuffle(perm.begin(), perm.end(), g_rng);
    for (int j = 0; j < k; ++j) ids[t * k + j] = perm[j];
  }
  return ids;
}

void bench_copy() {
  size_t free_b = 0, total_b = 0;
  ok(pf_cuda_device_memory(0, &free_b, &total_b), "pf_cuda_device_memory");
  const size_t n = std::min<size_t>(1ull << 30, free_b / 4);
  DBuf a(n), b(n);
  ok(pf_cuda_memset(a.p, 1, n, nullptr), "memset");
  const Timing t = time_calls([&](int i) { ok(pf_cuda_memcpy_d2d(i % 2 ? a.p : b.p, i % 2 ? b.p : a.p, n, nullptr), "copy"); });
  g_copy_gbps = 2.0 * n / (t.median_us * 1e3);
  printf("device-to-device copy of %zu MiB: %.1f us, %.1f GB/s (read + write)\n", n >> 20, t.median_us, g_copy_gbps);
  Result r;
  r.op = "copy";
  r.t = t;
  r.bytes = 2.0 * n;
  g_results.push_back(r);
}

void bench_lora_moe(pf_dtype dt, int d, int E, const std::vector<int64_t>& Ts) {
  const int r = 16, k = 2;
  const size_t bank_bytes = (size_t)E * r * 2 * d * 2;
  const size_t nbanks = sets_for(bank_bytes, 16);
  std::vector<std::unique_ptr<pf_cuda_bank, void (*)(pf_cuda_bank*)>> banks;
  for (size_t i = 0; i < nbanks; ++i) banks.push_back(make_bank(E, r, d, dt));
  for (int64_t T : Ts) {
    const size_t set_bytes = (size_t)T * d * 8 + (size_t)T * k * 8;
    const size_t nsets = sets_for(set_bytes, 8);
    std::vector<std::unique_ptr<DBuf>> xs, ys, is, ws;
    double bytes = 0;
    for (size_t s = 0; s < nsets; ++s) {
      const std::vector<int32_t> ids = route(T, k, E);
      std::vector<float> w(ids.size(), 0.5f);
      xs.emplace_back(new DBuf((size_t)T * d * 4));
      ys.emplace_back(new DBuf((size_t)T * d * 4));
      is.emplace_back(new DBuf(ids.size() * 4));
      ws.emplace_back(new DBuf(w.size() * 4));
      upload(*xs.back(), randn((size_t)T * d, 1.0f));
      upload(*ys.back(), randn((size_t)T * d, 1.0f));
      upload(*is.back(), ids);
      upload(*ws.back(), w);
      const size_t distinct = std::set<int32_t>(ids.begin(), ids.end()).size();
      bytes += (double)T * d * 4 + (double)T * d * 8 + (double)T * k * 8 + (double)distinct * r * 2 * d * 2;
    }
    bytes /= nsets;
    for (const char* path : {"decode", "fused", "grouped", "dense"}) {
      const auto path_is = [&](const char* p) { return strcmp(path, p) == 0; };
      if (path_is("dense") && E * r > 256) continue;  // past the dense path's columns
      pf_cuda_set_option("moe_prefill_min_tokens", path_is("grouped") || path_is("dense") ? 0 : -1);
      pf_cuda_set_option("moe_fused_max_tokens", path_is("fused") ? T : 0);
      pf_cuda_set_option("moe_dense_max_columns", path_is("dense") ? 256 : 0);
      Result res;
      res.op = "lora_moe";
      res.dtype = dt == PF_F16 ? "f16" : "bf16";
      res.path = path;
      res.d = d, res.E = E, res.r = r, res.k = k, res.T = T;
      res.t = time_calls([&](int i) {
        const size_t s = i % nsets;
        ok(pf_cuda_lora_moe(banks[i % nbanks].get(), xs[s]->as<float>(), T, is[s]->as<int32_t>(), ws[s]->as<float>(), k,
                            ys[s]->as<float>(), nullptr),
           "pf_cuda_lora_moe");
      });
      res.bytes = bytes;
      res.flops = 2.0 * T * k * r * (2.0 * d);
      add(res);
    }
    pf_cuda_set_option("moe_prefill_min_tokens", g_prefill_default);
    pf_cuda_set_option("moe_fused_max_tokens", g_fused_default);
    pf_cuda_set_option("moe_dense_max_columns", g_dense_default);
  }
}

// k 2 (the persona router's) and k 8 (the target shape: T 4096, E 64, k 8 under 10 us).
void bench_topk(int E, const std::vector<int64_t>& Ts) {
  for (int k : {2, 8}) {
    for (int64_t T : Ts) {
      DBuf l((size_t)T * E * 4), ids((size_t)T * k * 4), w((size_t)T * k * 4);
      upload(l, randn((size_t)T * E, 2.0f));
      Result res;
      res.op = "topk_softmax";
      res.dtype = "f32";
      res.E = E, res.k = k, res.T = T;
      res.t = time_calls([&](int) {
        ok(pf_cuda_topk_softmax(l.as<float>(), T, E, k, 1, ids.as<int32_t>(), w.as<float>(), nullptr, nullptr), "topk");
      });
      res.bytes = (double)T * E * 4 + (double)T * k * 8;
      add(res);
    }
  }
}

void bench_fold_merge(pf_dtype dt, int d, int E) {
  const int r = 16, k = 2, R = k * r;
  const size_t nbanks = sets_for((size_t)E * r * 2 * d * 2, 16);
  std::vector<std::unique_ptr<pf_cuda_bank, void (*)(pf_cuda_bank*)>> banks;
  for (size_t i = 0; i < nbanks; ++i) banks.push_back(make_bank(E, r, d, dt));
  for (int64_t B : {1, 16, 64}) {
    const std::vector<int32_t> ids = route(B, k, E);
    DBuf di(ids.size() * 4), dw(ids.size() * 4), a((size_t)B * d * R * 4), b((size_t)B * R * d * 4);
    upload(di, ids);
    upload(dw, std::vector<float>(ids.size(), 0.5f));
    Result res;
    res.op = "fold_experts";
    res.dtype = dt == PF_F16 ? "f16" : "bf16";
    res.d = d, res.E = E, res.r = r, res.k = k, res.T = B;
    res.extra = "B=T R=32";
    res.t = time_calls([&](int i) {
      ok(pf_cuda_fold_experts(banks[i % nbanks].get(), di.as<int32_t>(), dw.as<float>(), B, k, nullptr, B, R,
                              a.as<float>(), b.as<float>(), nullptr),
         "fold");
    });
    res.bytes = (double)B * R * 2 * d * 4 + (double)B * k * r * 2 * d * 2;
    add(res);
  }
  const int n = 2;
  const size_t nw = sets_for((size_t)d * d * 4, 4);
  std::vector<std::unique_ptr<DBuf>> Ws;
  for (size_t i = 0; i < nw; ++i) {
    Ws.emplace_back(new DBuf((size_t)d * d * 4));
    upload(*Ws.back(), randn((size_t)d * d, 0.02f));
  }
  const std::vector<int32_t> ids = {0, E - 1};
  DBuf di(8), dw(8);
  upload(di, ids);
  upload(dw, std::vector<float>{0.7f, 0.3f});
  for (pf_layout layout : {PF_LAYOUT_IN_OUT, PF_LAYOUT_OUT_IN}) {
    Result res;
    res.op = "merge_experts";
    res.dtype = dt == PF_F16 ? "f16" : "bf16";
    res.path = layout == PF_LAYOUT_IN_OUT ? "in_out" : "out_in";
    res.d = d, res.E = E, res.r = r, res.k = n;
    res.t = time_calls([&](int i) {
      ok(pf_cuda_merge_experts(banks[i % nbanks].get(), di.as<int32_t>(), dw.as<float>(), n, Ws[i % nw]->as<float>(),
                               layout, nullptr),
         "merge");
    });
    res.bytes = 2.0 * d * d * 4 + (double)n * r * 2 * d * 2;
    res.flops = 2.0 * d * d * n * r;
    add(res);
  }
}

std::string json_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\';
    o += c;
  }
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  std::string out_dir = "bench/results";
  bool quick = false;
  std::string only;  // --only lora_moe|topk_softmax|fold_merge: bench that op alone
  std::vector<int64_t> ts_opt;  // --ts 1,16,64: the token counts
  for (int i = 1; i < argc; ++i) {
    if (strcmp(argv[i], "--out") == 0 && i + 1 < argc) out_dir = argv[++i];
    else if (strcmp(argv[i], "--quick") == 0) quick = true;
    else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) only = argv[++i];
    else if (strcmp(argv[i], "--ts") == 0 && i + 1 < argc) {
      for (const char* p = argv[++i]; *p;) {
        char* end = nullptr;
        const long long v = strtoll(p, &end, 10);
        if (end == p) break;
        if (v > 0) ts_opt.push_back(v);
        p = *end == ',' ? end + 1 : end;
      }
    }
  }
  int32_t devices = 0;
  ok(pf_cuda_device_count(&devices), "pf_cuda_device_count");
  if (devices == 0) {
    printf("skipped: no CUDA device (%s)\n", pf_cuda_last_error());
    return 0;
  }
  char name[256];
  int32_t ma = 0, mi = 0;
  ok(pf_cuda_device_name(0, name, sizeof name), "pf_cuda_device_name");
  ok(pf_cuda_device_capability(0, &ma, &mi), "pf_cuda_device_capability");
  printf("%s, compute capability %d.%d; %s\n", name, ma, mi, pf_cuda_build_info());

  pf_cuda_get_option("moe_prefill_min_tokens", &g_prefill_default);
  pf_cuda_get_option("moe_fused_max_tokens", &g_fused_default);
  pf_cuda_get_option("moe_dense_max_columns", &g_dense_default);
  bench_copy();
  const std::vector<int64_t> Ts = !ts_opt.empty() ? ts_opt
                                  : quick          ? std::vector<int64_t>{1, 512}
                                                   : std::vector<int64_t>{1, 16, 64, 512, 4096};
  const bool all = only.empty();
  {  // what the checks cost, once
    pf_cuda_set_option("sync_checks", 1);
    pf_cuda_set_option("check_pointers", 1);
    auto bank = make_bank(10, 16, 4096, PF_F16);
    DBuf x(4096 * 4), y(4096 * 4), ids(8), w(8);
    upload(ids, std::vector<int32_t>{3, 7});
    upload(w, std::vector<float>{0.6f, 0.4f});
    Result res;
    res.op = "lora_moe";
    res.dtype = "f16";
    res.path = "decode";
    res.extra = "checks on";
    res.d = 4096, res.E = 10, res.r = 16, res.k = 2, res.T = 1;
    res.t = time_calls([&](int) {
      ok(pf_cuda_lora_moe(bank.get(), x.as<float>(), 1, ids.as<int32_t>(), w.as<float>(), 2, y.as<float>(), nullptr), "moe");
    });
    res.bytes = 4096 * 12.0 + 2.0 * 16 * 8192 * 2;
    add(res);
  }
  pf_cuda_set_option("sync_checks", 0);
  pf_cuda_set_option("check_pointers", 0);
  if (all || only == "lora_moe")
    for (pf_dtype dt : {PF_F16, PF_BF16})
      for (int d : {4096, 8192})
        for (int E : {10, 64}) bench_lora_moe(dt, d, E, Ts);
  if (all || only == "topk_softmax")
    for (int E : {10, 64}) bench_topk(E, Ts);
  if (all || only == "fold_merge")
    for (pf_dtype dt : {PF_F16, PF_BF16})
      for (int d : {4096, 8192}) bench_fold_merge(dt, d, 10);
  ok(pf_cuda_check(nullptr), "pf_cuda_check");

  // JSON
  char stamp[32];
  const time_t now = time(nullptr);
  strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", gmtime(&now));
  std::string slug;
  for (const char* c = name; *c; ++c) slug += isalnum((unsigned char)*c) ? (char)tolower(*c) : '-';
  const std::string path = fmt("%s/gpu-%s-%s.json", out_dir.c_str(), slug.c_str(), stamp);
  FILE* f = fopen(path.c_str(), "w");
  if (!f) {
    fprintf(stderr, "bench_gpu: cannot write %s\n", path.c_str());
    return 1;
  }
  fprintf(f, "{\n  \"device\": \"%s\",\n  \"compute_capability\": \"%d.%d\",\n  \"build\": \"%s\",\n", json_escape(name).c_str(),
          ma, mi, json_escape(pf_cuda_build_info()).c_str());
  fprintf(f, "  \"date\": \"%s\",\n  \"copy_gbps\": %.2f,\n", stamp, g_copy_gbps);
  fprintf(f, "  \"method\": \"CUDA events per call, median of >= 30 calls after 5 warm-up calls; inputs rotated over >= "
             "128 MiB; GB/s over the fewest bytes the op must move; checks off\",\n  \"results\": [\n");
  for (size_t i = 0; i < g_results.size(); ++i) {
    const Result& r = g_results[i];
    fprintf(f,
            "    {\"op\": \"%s\", \"dtype\": \"%s\", \"path\": \"%s\", \"note\": \"%s\", \"d\": %d, \"E\": %d, \"r\": %d, "
            "\"k\": %d, \"T\": %lld, \"median_us\": %.3f, \"p10_us\": %.3f, \"p90_us\": %.3f, \"runs\": %d, "
            "\"bytes\": %.0f, \"gbps\": %.2f, \"tflops\": %.4f, \"of_copy\": %.4f}%s\n",
            r.op.c_str(), r.dtype.c_str(), r.path.c_str(), r.extra.c_str(), r.d, r.E, r.r, r.k, (long long)r.T,
            r.t.median_us, r.t.p10_us, r.t.p90_us, r.t.runs, r.bytes, r.bytes / (r.t.median_us * 1e3),
            r.flops / (r.t.median_us * 1e6), r.bytes / (r.t.median_us * 1e3) / g_copy_gbps,
            i + 1 < g_results.size() ? "," : "");
  }
  fprintf(f, "  ]\n}\n");
  fclose(f);
  printf("wrote %s\n", path.c_str());
  return 0;
}
