// Failure messages, process-wide options, build facts and the plugin table.
#include <stdarg.h>
#include <stdio.h>

#include "../common/status_text.h"
#include <string.h>

#include <atomic>

#include "runtime.cuh"

#ifndef PF_CUDA_ARCHS
#define PF_CUDA_ARCHS "unknown"
#endif
#ifndef PF_VERSION
#define PF_VERSION "0.0.0"
#endif

namespace pf {
namespace cuda {
namespace {
thread_local char g_last_error[512] = "";
std::atomic<int> g_sync_checks{1};
std::atomic<int> g_check_pointers{1};
// From T 2048 on, the grouped tensor-core path. Measured on an H200 (bench/results/
// gpu-nvidia-h200-20261126-020522-after.json, r 16, k 2, d 4096/8192, E 10/64): grouped beats
// decode at T 4096 in every shape (267-563 us vs 498-987 us) and at T 512 only for d 8192,
// E 10; decode wins every shape at T <= 256. Between 512 and 4096 it was not measured: a
// linear fit of both paths puts the crossover at T ~750 (E 10) to ~1450 (E 64); 2048 leaves a
// margin for the E 64 shapes. (The first grouped version was 30-100x slower: default -1.)
std::atomic<int64_t> g_prefill_min_tokens{2048};
// Up to this T, the one-kernel decode (lora_moe_fused.cu). Off (0) until a GPU measures it:
// it was written in a session without a device, and bench/results/journal-cuda.md predicts it wins
// somewhere between T 16 and T 64. test:gpu checks it forced on; bench:gpu times it.
std::atomic<int64_t> g_fused_max_tokens{0};
// Up to this many bank columns (C = Σ r_e), the prefill path multiplies every expert densely
// (lora_moe_grouped.cu, DenseTiles) instead of grouping tokens by expert. Off (0) until a GPU
// measures it: written, and checked under the CPU emulation, in a session without a device.
std::atomic<int64_t> g_dense_max_columns{0};
}  // namespace

pf_status fail(pf_status status, const char* fmt, ...) {
  va_list args;
  va_start(args, fmt);
  vsnprintf(g_last_error, sizeof g_last_error, fmt, args);
  va_end(args);
  return status;
}

pf_status cuda_fail(cudaError_t err, const char* what) {
  cudaGetLastError();  // clear a non-sticky error so the next call starts clean
  return fail(err == cudaErrorMemoryAllocation ? PF_ERR_MEMORY : PF_ERR_BACKEND, "CUDA error in %s: %s (%s)",
              what, cudaGetErrorString(err), cudaGetErrorName(err));
}

pf_status check_launch(const char* kernel) {
  const cudaError_t err = cudaGetLastError();
  if (err == cudaSuccess) return PF_OK;
  char what[96];
  snprintf(what, sizeof what, "kernel %s", kernel);
  return cuda_fail(err, what);
}

bool opt_sync_checks() { return g_sync_checks.load(std::memory_order_relaxed) != 0; }
bool opt_check_pointers() { return g_check_pointers.load(std::memory_order_relaxed) != 0; }
int64_t opt_prefill_min_tokens() { return g_prefill_min_tokens.load(std::memory_order_relaxed); }
int64_t opt_fused_max_tokens() { return g_fused_max_tokens.load(std::memory_order_relaxed); }
int64_t opt_dense_max_columns() { return g_dense_max_columns.load(std::memory_order_relaxed); }

}  // namespace cuda
}  // namespace pf

extern "C" {

const char* pf_cuda_last_error(void) { return pf::cuda::g_last_error; }

const char* pf_cuda_status_name(pf_status s) { return pf_status_text(s); }

const char* pf_cuda_build_info(void) {
  static char info[256];
  static const bool written = [] {  // thread-safe one-time initialisation
    snprintf(info, sizeof info, "personafuse-cuda %s; CUDA runtime %d.%d (static); built for %s",
             PF_VERSION, CUDART_VERSION / 1000, CUDART_VERSION % 1000 / 10, PF_CUDA_ARCHS);
    return true;
  }();
  (void)written;
  return info;
}

static const char kUnknownOption[] =
    "Expected one of sync_checks, check_pointers, moe_prefill_min_tokens, moe_fused_max_tokens, "
    "moe_dense_max_columns for name but received %s";

pf_status pf_cuda_set_option(const char* name, int64_t value) {
  using pf::cuda::fail;
  if (name == nullptr) return fail(PF_ERR_ARGUMENT, "Expected an option name for name but received null");
  if (strcmp(name, "sync_checks") == 0 || strcmp(name, "check_pointers") == 0) {
    if (value != 0 && value != 1)
      return fail(PF_ERR_ARGUMENT, "Expected 0 or 1 for %s but received %lld", name, (long long)value);
    (name[0] == 's' ? pf::cuda::g_sync_checks : pf::cuda::g_check_pointers).store((int)value);
    return PF_OK;
  }
  if (strcmp(name, "moe_prefill_min_tokens") == 0) {
    if (value < -1)
      return fail(PF_ERR_ARGUMENT, "Expected an integer >= -1 for %s but received %lld", name, (long long)value);
    pf::cuda::g_prefill_min_tokens.store(value);
    return PF_OK;
  }
  if (strcmp(name, "moe_fused_max_tokens") == 0 || strcmp(name, "moe_dense_max_columns") == 0) {
    if (value < 0)
      return fail(PF_ERR_ARGUMENT, "Expected an integer >= 0 for %s but received %lld", name, (long long)value);
    const bool fused = strcmp(name, "moe_fused_max_tokens") == 0;
    (fused ? pf::cuda::g_fused_max_tokens : pf::cuda::g_dense_max_columns).store(value);
    return PF_OK;
  }
  return fail(PF_ERR_ARGUMENT, kUnknownOption, name);
}

pf_status pf_cuda_get_option(const char* name, int64_t* value) {
  using pf::cuda::fail;
  if (name == nullptr || value == nullptr)
    return fail(PF_ERR_ARGUMENT, "Expected a pointer for %s but received null", name ? "value" : "name");
  if (strcmp(name, "sync_checks") == 0) *value = pf::cuda::g_sync_checks.load();
  else if (strcmp(name, "check_pointers") == 0) *value = pf::cuda::g_check_pointers.load();
  else if (strcmp(name, "moe_prefill_min_tokens") == 0) *value = pf::cuda::g_prefill_min_tokens.load();
  else if (strcmp(name, "moe_fused_max_tokens") == 0) *value = pf::cuda::g_fused_max_tokens.load();
  else if (strcmp(name, "moe_dense_max_columns") == 0) *value = pf::cuda::g_dense_max_columns.load();
  else
    return fail(PF_ERR_ARGUMENT, kUnknownOption, name);
  return PF_OK;
}

const pf_cuda_api* pf_cuda_get_api(uint32_t abi_version) {
  static const pf_cuda_api api = {
      PF_CUDA_ABI_VERSION,
      (uint32_t)sizeof(pf_cuda_api),
      pf_cuda_last_error,
      pf_cuda_status_name,
      pf_cuda_build_info,
      pf_cuda_set_option,
      pf_cuda_get_option,
      pf_cuda_device_count,
      pf_cuda_device_name,
      pf_cuda_device_capability,
      pf_cuda_device_memory,
      pf_cuda_set_device,
      pf_cuda_get_device,
      pf_cuda_device_synchronize,
      pf_cuda_malloc,
      pf_cuda_free,
      pf_cuda_memcpy_h2d,
      pf_cuda_memcpy_d2h,
      pf_cuda_memcpy_d2d,
      pf_cuda_memset,
      pf_cuda_stream_create,
      pf_cuda_stream_destroy,
      pf_cuda_stream_sync,
      pf_cuda_event_create,
      pf_cuda_event_destroy,
      pf_cuda_event_record,
      pf_cuda_event_elapsed_ms,
      pf_cuda_check,
      pf_cuda_bank_create,
      pf_cuda_bank_destroy,
      pf_cuda_bank_shape,
      pf_cuda_bank_bytes,
      pf_cuda_topk_softmax,
      pf_cuda_lora_moe,
      pf_cuda_fold_experts,
      pf_cuda_merge_experts,
  };
  return abi_version == PF_CUDA_ABI_VERSION ? &api : nullptr;
}

}  // extern "C"
