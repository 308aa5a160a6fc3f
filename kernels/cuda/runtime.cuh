// Host-side plumbing shared by the CUDA ops: failures, options, per-device state, scratch
// memory, pointer checks, and the fault word through which kernels report bad data.
#ifndef PF_CUDA_RUNTIME_CUH
#define PF_CUDA_RUNTIME_CUH

#include <cuda_runtime.h>
#include <stdint.h>

#include "personafuse_cuda.h"

namespace pf {
namespace cuda {

// ---- failures ------------------------------------------------------------------------------
// Records the printf-formatted message for pf_cuda_last_error() and returns `status`.
pf_status fail(pf_status status, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
// A CUDA error: PF_ERR_MEMORY for a failed allocation, else PF_ERR_BACKEND; `what` names the
// call ("cudaMalloc of the bank", "kernel lora_moe_shrink"). Clears a non-sticky error.
pf_status cuda_fail(cudaError_t err, const char* what);
// After a launch: cudaGetLastError, reported as cuda_fail(err, "kernel <name>").
pf_status check_launch(const char* kernel);

// ---- options (process-wide) ----------------------------------------------------------------
bool opt_sync_checks();
bool opt_check_pointers();
int64_t opt_prefill_min_tokens();
int64_t opt_fused_max_tokens();
int64_t opt_dense_max_columns();

// ---- devices ---------------------------------------------------------------------------------
struct DeviceState {
  int id = -1;
  int cc_major = 0, cc_minor = 0;
  int sms = 0;
  size_t smem_optin = 0;             // most dynamic shared memory one block may opt into
  cudaMemPool_t pool = nullptr;      // the library's own pool for scratch (null: no pools)
  unsigned long long* fault = nullptr;  // the device's fault word (sync_checks = 0)
};
// State of the calling thread's current device, set up on first use.
pf_status current_device(const DeviceState** out);

// ---- scratch: device memory for one op, freed in stream order when the op returns ----------
class Scratch {
 public:
  Scratch(const DeviceState& dev, cudaStream_t stream) : dev_(dev), stream_(stream) {}
  ~Scratch();
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  pf_status alloc(size_t bytes, void** out);

 private:
  const DeviceState& dev_;
  cudaStream_t stream_;
  void* ptrs_[4] = {nullptr, nullptr, nullptr, nullptr};
  int n_ = 0;
};

// ---- argument checks -------------------------------------------------------------------------
// With check_pointers on: p must be memory the device can read (device, managed, or mapped
// pinned host memory), on this device, and where CUDA knows its allocation, hold `bytes` from p.
pf_status check_array(const DeviceState& dev, const void* p, size_t bytes, const char* name);

// ---- faults recorded by kernels ---------------------------------------------------------------
// A fault is one 64-bit key, kind << 56 | index; kernels atomicMin it into the fault word, so
// the first kind in the CPU op's check order wins, then the lowest index. All-ones = none.
enum FaultKind : unsigned long long {
  kFaultIds = 1,        // ids[index] outside [-1, E)
  kFaultWeights = 2,    // weights[index] not finite
  kFaultSlots = 3,      // slots[index] outside [0, num_slots) or a repeat of an earlier slot (one
                        // kind: the CPU op checks both in one pass over the slots)
  kFaultLogits = 4,     // row `index` of logits holds NaN / +Inf or no finite value
};
constexpr unsigned long long kNoFault = ~0ull;

// What a fault message needs to know about the op that found it (device arrays it may read).
struct OpContext {
  const char* op;
  const int32_t* ids = nullptr;
  const float* weights = nullptr;
  const int32_t* slots = nullptr;
  int32_t experts = 0;
  int64_t num_slots = 0;
  int64_t* bad_row = nullptr;  // host
};

// The word one op's kernels record into: a fresh word per call with sync_checks on (so a
// fault is reported by the call that caused it), the device's shared word otherwise.
class Faults {
 public:
  Faults(const DeviceState& dev, cudaStream_t stream) : dev_(dev), stream_(stream), scratch_(dev, stream) {}
  pf_status begin();
  unsigned long long* word() const { return word_; }
  // sync_checks on: waits for the stream and returns the recorded fault as the CPU op would.
  pf_status finish(const OpContext& ctx);

 private:
  const DeviceState& dev_;
  cudaStream_t stream_;
  Scratch scratch_;
  unsigned long long* word_ = nullptr;
  bool sync_ = true;
};

// Kernels: record a fault (never the hot path: only when bad data is seen).
#if defined(__CUDACC__) || defined(PF_CUDA_EMULATE)
__device__ __forceinline__ void record_fault(unsigned long long* word, FaultKind kind, int64_t index) {
  atomicMin(word, ((unsigned long long)kind << 56) | (unsigned long long)index);
}
#endif

inline cudaStream_t to_cuda(pf_cuda_stream s) { return reinterpret_cast<cudaStream_t>(s); }

// A kernel launch, PF_LAUNCH(kernel, grid, block, smem, stream)(args...), so that the CPU
// emulation tests (kernels/tests/emu) can run the launch code of the kernels they cover with
// their own definition.
#ifndef PF_LAUNCH
#define PF_LAUNCH(kernel, grid, block, smem, stream) kernel<<<grid, block, smem, stream>>>
#endif

// Grid sizes: at most this many blocks on y/z, grid-stride loops cover the rest.
constexpr int64_t kMaxGridY = 65535;
constexpr int64_t kMaxGridX = 2147483647;

}  // namespace cuda
}  // namespace pf
#endif
