// tuneAllocator(mmapThreshold, trimThreshold): glibc malloc's two thresholds, for the whole process
// (mallopt). onnxruntime-node hands back every output of a run in a freshly allocated buffer: a decode
// step's KV cache, ~1.6 MB at batch 16 on the demo model. Under glibc's defaults an allocation over the
// (dynamic) mmap threshold gets fresh pages, and freed memory at the top of a heap is given back to the
// kernel, so each step page-faults its outputs in again: measured 828 faults and 6.7 ms of system time
// per step at batch 16 (a 5.9 ms step with the thresholds raised, 18 ms without). Returns true when the
// settings took (glibc), false where there is no mallopt (musl, macOS, Windows). No maths here.
#include <napi.h>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "args.h"
#include "ops.h"

namespace pfn {

// mallopt refuses an mmap threshold above HEAP_MAX_SIZE / 2 = 4 MiB x sizeof(long) (32 MiB on 64-bit glibc)
constexpr int64_t kMaxMmapThreshold = (int64_t{4} << 20) * static_cast<int64_t>(sizeof(long));
constexpr int64_t kMaxTrimThreshold = 0x7fffffff;  // mallopt takes an int

Napi::Value TuneAllocator(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int64_t mmap_threshold = integer(env, info[0], "mmapThreshold", 0, kMaxMmapThreshold);
  const int64_t trim_threshold = integer(env, info[1], "trimThreshold", 0, kMaxTrimThreshold);
#if defined(__GLIBC__)
  const bool ok = mallopt(M_MMAP_THRESHOLD, static_cast<int>(mmap_threshold)) == 1 &&
                  mallopt(M_TRIM_THRESHOLD, static_cast<int>(trim_threshold)) == 1;
  return Napi::Boolean::New(env, ok);
#else
  (void)mmap_threshold;
  (void)trim_threshold;
  return Napi::Boolean::New(env, false);
#endif
}

}  // namespace pfn
