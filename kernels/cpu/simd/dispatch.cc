// Picks the SIMD level once, from what the CPU reports at run time; pf_set_simd can cap it
// (tests compare every level against the float64 reference on the same machine).
#include <atomic>
#include <string.h>

#include "ops.h"

namespace pf {
namespace {

enum Level { kScalar = 0, kAvx2 = 1, kAvx512 = 2 };

Level detect() {
#if defined(__x86_64__) || defined(_M_X64)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl"))
    return kAvx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
      __builtin_cpu_supports("f16c"))
    return kAvx2;
#endif
  return kScalar;
}

const Level kBest = detect();
std::atomic<int> g_cap{kAvx512};

}  // namespace

const SimdOps& simd() {
#if defined(__x86_64__) || defined(_M_X64)
  const int level = kBest < g_cap.load(std::memory_order_relaxed) ? kBest : g_cap.load();
  if (level == kAvx512) return simd_avx512();
  if (level == kAvx2) return simd_avx2();
#endif
  return simd_scalar();
}

// Returns false for a name this build does not know.
bool set_simd_cap(const char* name) {
  if (strcmp(name, "scalar") == 0) g_cap = kScalar;
  else if (strcmp(name, "avx2") == 0) g_cap = kAvx2;
  else if (strcmp(name, "avx512") == 0 || strcmp(name, "best") == 0) g_cap = kAvx512;
  else return false;
  return true;
}

}  // namespace pf
