// Devices, memory, streams, events; the per-device state the ops use (scratch pool, fault
// word); pointer checks; and turning a recorded fault into the status of the op that found it.
#include <cuda.h>  // driver types only, for the entry point of cuMemGetAddressRange
#include <stdio.h>
#include <string.h>

#include <atomic>
#include <mutex>

#include "runtime.cuh"

namespace pf {
namespace cuda {
namespace {

constexpr int kMaxDevices = 64;
constexpr uint64_t kPoolKeepBytes = 64ull << 20;  // scratch the pool keeps between ops

std::mutex g_mu;
DeviceState g_dev[kMaxDevices];
std::atomic<bool> g_ready[kMaxDevices];

pf_status init_device(int id, DeviceState* d) {
  d->id = id;
  int pools = 0, optin = 0;
  cudaError_t e = cudaDeviceGetAttribute(&d->cc_major, cudaDevAttrComputeCapabilityMajor, id);
  if (!e) e = cudaDeviceGetAttribute(&d->cc_minor, cudaDevAttrComputeCapabilityMinor, id);
  if (!e) e = cudaDeviceGetAttribute(&d->sms, cudaDevAttrMultiProcessorCount, id);
  if (!e) e = cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, id);
  if (!e) e = cudaDeviceGetAttribute(&pools, cudaDevAttrMemoryPoolsSupported, id);
  if (e) return cuda_fail(e, "cudaDeviceGetAttribute");
  d->smem_optin = (size_t)optin;
  if (pools) {
    cudaMemPoolProps props;
    memset(&props, 0, sizeof props);
    props.allocType = cudaMemAllocationTypePinned;
    props.location.type = cudaMemLocationTypeDevice;
    props.location.id = id;
    if ((e = cudaMemPoolCreate(&d->pool, &props))) return cuda_fail(e, "cudaMemPoolCreate");
    uint64_t keep = kPoolKeepBytes;
    if ((e = cudaMemPoolSetAttribute(d->pool, cudaMemPoolAttrReleaseThreshold, &keep)))
      return cuda_fail(e, "cudaMemPoolSetAttribute");
  }
  if ((e = cudaMalloc(&d->fault, sizeof *d->fault))) return cuda_fail(e, "cudaMalloc of the fault word");
  if ((e = cudaMemset(d->fault, 0xff, sizeof *d->fault))) return cuda_fail(e, "cudaMemset of the fault word");
  return PF_OK;
}

// cuMemGetAddressRange through the runtime's driver entry point (no link to libcuda).
typedef CUresult (*AddressRangeFn)(CUdeviceptr* base, size_t* size, CUdeviceptr ptr);
AddressRangeFn address_range_fn() {
  static const AddressRangeFn fn = [] {
    void* p = nullptr;
    cudaDriverEntryPointQueryResult q;
    if (cudaGetDriverEntryPointByVersion("cuMemGetAddressRange", &p, 12000, cudaEnableDefault, &q) != cudaSuccess ||
        q != cudaDriverEntryPointSuccess) {
      cudaGetLastError();
      p = nullptr;
    }
    return reinterpret_cast<AddressRangeFn>(p);
  }();
  return fn;
}

const char* fault_what(unsigned long long kind) {
  switch (kind) {
    case kFaultIds: return "an expert id outside [-1, experts) in ids";
    case kFaultWeights: return "a non-finite number in weights";
    case kFaultSlots: return "a slot index outside [0, num_slots) or repeated in slots";
    case kFaultLogits: return "a NaN or +Infinity or no finite value in a row of logits";
  }
  return "an unknown fault";
}

}  // namespace

pf_status current_device(const DeviceState** out) {
  int id = 0;
  cudaError_t e = cudaGetDevice(&id);
  if (e) return cuda_fail(e, "cudaGetDevice");
  if (id < 0 || id >= kMaxDevices)
    return fail(PF_ERR_BACKEND, "Expected a device index below %d but the current device is %d", kMaxDevices, id);
  if (!g_ready[id].load(std::memory_order_acquire)) {
    std::lock_guard<std::mutex> lock(g_mu);
    if (!g_ready[id].load(std::memory_order_relaxed)) {
      if (pf_status s = init_device(id, &g_dev[id])) return s;
      g_ready[id].store(true, std::memory_order_release);
    }
  }
  *out = &g_dev[id];
  return PF_OK;
}

pf_status Scratch::alloc(size_t bytes, void** out) {
  *out = nullptr;
  if (n_ == 4) return fail(PF_ERR_BACKEND, "Scratch holds at most 4 allocations per op");
  if (bytes == 0) bytes = 16;
  cudaError_t e = dev_.pool ? cudaMallocFromPoolAsync(out, bytes, dev_.pool, stream_) : cudaMalloc(out, bytes);
  if (e) return cuda_fail(e, "the allocation of scratch memory");
  ptrs_[n_++] = *out;
  return PF_OK;
}

Scratch::~Scratch() {
  for (int i = 0; i < n_; ++i) {
    if (dev_.pool) cudaFreeAsync(ptrs_[i], stream_);
    else cudaFree(ptrs_[i]);
  }
}

pf_status check_array(const DeviceState& dev, const void* p, size_t bytes, const char* name) {
  if (!opt_check_pointers()) return PF_OK;
  cudaPointerAttributes a;
  cudaError_t e = cudaPointerGetAttributes(&a, p);
  if (e) {
    cudaGetLastError();
    return fail(PF_ERR_ARGUMENT, "Expected device memory for %s but CUDA does not know the pointer (%s)", name,
                cudaGetErrorString(e));
  }
  switch (a.type) {
    case cudaMemoryTypeUnregistered:
      return fail(PF_ERR_ARGUMENT, "Expected device memory for %s but received ordinary host memory", name);
    case cudaMemoryTypeHost:
      if (a.devicePointer == nullptr)
        return fail(PF_ERR_ARGUMENT, "Expected device memory for %s but received pinned host memory that is not mapped",
                    name);
      return PF_OK;  // mapped pinned memory: the driver knows no device extent to check
    case cudaMemoryTypeDevice:
      if (a.device != dev.id)
        return fail(PF_ERR_ARGUMENT, "Expected memory of device %d for %s but received memory of device %d", dev.id,
                    name, a.device);
      break;
    case cudaMemoryTypeManaged:
      break;
  }
  if (AddressRangeFn range = address_range_fn()) {
    CUdeviceptr base = 0;
    size_t size = 0;
    if (range(&base, &size, (CUdeviceptr)(uintptr_t)p) == CUDA_SUCCESS) {
      const size_t avail = (size_t)(base + size - (CUdeviceptr)(uintptr_t)p);
      if (avail < bytes)
        return fail(PF_ERR_ARGUMENT,
                    "Expected at least %zu bytes of device memory for %s but its allocation holds %zu bytes from that "
                    "address",
                    bytes, name, avail);
    }
  }
  return PF_OK;
}

pf_status Faults::begin() {
  sync_ = opt_sync_checks();
  if (!sync_) {
    word_ = dev_.fault;
    return PF_OK;
  }
  void* p = nullptr;
  if (pf_status s = scratch_.alloc(sizeof(unsigned long long), &p)) return s;
  word_ = static_cast<unsigned long long*>(p);
  if (cudaError_t e = cudaMemsetAsync(word_, 0xff, sizeof *word_, stream_)) return cuda_fail(e, "cudaMemsetAsync");
  return PF_OK;
}

pf_status Faults::finish(const OpContext& c) {
  if (!sync_) return PF_OK;
  unsigned long long key = kNoFault;
  cudaError_t e = cudaMemcpyAsync(&key, word_, sizeof key, cudaMemcpyDeviceToHost, stream_);
  if (!e) e = cudaStreamSynchronize(stream_);
  if (e) return cuda_fail(e, c.op);
  if (key == kNoFault) return PF_OK;
  const unsigned long long kind = key >> 56;
  const long long index = (long long)(key & ((1ull << 56) - 1));
  // Messages in the CPU op's words; the offending value is read back from the caller's array.
  int32_t iv = 0;
  float fv = 0.0f;
  switch (kind) {
    case kFaultIds:
      if ((e = cudaMemcpy(&iv, c.ids + index, sizeof iv, cudaMemcpyDeviceToHost))) return cuda_fail(e, c.op);
      return fail(PF_ERR_ARGUMENT, "Expected expert ids between -1 and %d for ids but received %d at index %lld",
                  c.experts - 1, iv, index);
    case kFaultWeights:
      if ((e = cudaMemcpy(&fv, c.weights + index, sizeof fv, cudaMemcpyDeviceToHost))) return cuda_fail(e, c.op);
      return fail(PF_ERR_VALUE, "Expected finite numbers for weights but received %g at index %lld", (double)fv, index);
    case kFaultSlots:  // out of range, or else a repeat
      if ((e = cudaMemcpy(&iv, c.slots + index, sizeof iv, cudaMemcpyDeviceToHost))) return cuda_fail(e, c.op);
      if (iv < 0 || iv >= c.num_slots)
        return fail(PF_ERR_ARGUMENT,
                    "Expected slot indices between 0 and %lld for slots but received %d at index %lld",
                    (long long)c.num_slots - 1, iv, index);
      return fail(PF_ERR_ARGUMENT, "Expected distinct slot indices for slots but received %d twice", iv);
    case kFaultLogits:
      if (c.bad_row) *c.bad_row = index;
      return fail(PF_ERR_VALUE,
                  "Expected finite numbers (or -Infinity) with at least one finite value in each row for logits but "
                  "received a NaN or +Infinity or no finite value in row %lld",
                  index);
  }
  return fail(PF_ERR_BACKEND, "%s recorded an unknown fault %llx", c.op, key);
}

}  // namespace cuda
}  // namespace pf

using pf::cuda::cuda_fail;
using pf::cuda::fail;
using pf::cuda::to_cuda;

extern "C" {

pf_status pf_cuda_device_count(int32_t* count) {
  if (count == nullptr) return fail(PF_ERR_ARGUMENT, "Expected a pointer for count but received null");
  *count = 0;
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver) {
    cudaGetLastError();
    fail(PF_OK, "No CUDA device: %s (%s)", cudaGetErrorString(e), cudaGetErrorName(e));
    return PF_OK;
  }
  if (e) return cuda_fail(e, "cudaGetDeviceCount");
  *count = n;
  return PF_OK;
}

pf_status pf_cuda_device_name(int32_t device, char* name, size_t size) {
  if (name == nullptr || size == 0) return fail(PF_ERR_ARGUMENT, "Expected a buffer for name but received null");
  name[0] = '\0';
  cudaDeviceProp p;
  if (cudaError_t e = cudaGetDeviceProperties(&p, device)) return cuda_fail(e, "cudaGetDeviceProperties");
  snprintf(name, size, "%s", p.name);
  return PF_OK;
}

pf_status pf_cuda_device_capability(int32_t device, int32_t* major, int32_t* minor) {
  int ma = 0, mi = 0;
  cudaError_t e = cudaDeviceGetAttribute(&ma, cudaDevAttrComputeCapabilityMajor, device);
  if (!e) e = cudaDeviceGetAttribute(&mi, cudaDevAttrComputeCapabilityMinor, device);
  if (e) return cuda_fail(e, "cudaDeviceGetAttribute");
  if (major) *major = ma;
  if (minor) *minor = mi;
  return PF_OK;
}

pf_status pf_cuda_device_memory(int32_t device, size_t* free_bytes, size_t* total_bytes) {
  int cur = 0;
  size_t f = 0, t = 0;
  cudaError_t e = cudaGetDevice(&cur);
  if (!e) e = cudaSetDevice(device);
  if (!e) {
    e = cudaMemGetInfo(&f, &t);
    cudaSetDevice(cur);
  }
  if (e) return cuda_fail(e, "cudaMemGetInfo");
  if (free_bytes) *free_bytes = f;
  if (total_bytes) *total_bytes = t;
  return PF_OK;
}

pf_status pf_cuda_set_device(int32_t device) {
  if (cudaError_t e = cudaSetDevice(device)) return cuda_fail(e, "cudaSetDevice");
  return PF_OK;
}

pf_status pf_cuda_get_device(int32_t* device) {
  if (device == nullptr) return fail(PF_ERR_ARGUMENT, "Expected a pointer for device but received null");
  int d = 0;
  if (cudaError_t e = cudaGetDevice(&d)) return cuda_fail(e, "cudaGetDevice");
  *device = d;
  return PF_OK;
}

pf_status pf_cuda_device_synchronize(void) {
  if (cudaError_t e = cudaDeviceSynchronize()) return cuda_fail(e, "cudaDeviceSynchronize");
  return PF_OK;
}

pf_status pf_cuda_malloc(size_t bytes, void** out) {
  if (out == nullptr) return fail(PF_ERR_ARGUMENT, "Expected a pointer for out but received null");
  *out = nullptr;
  if (bytes == 0) return PF_OK;
  if (cudaError_t e = cudaMalloc(out, bytes)) {
    *out = nullptr;
    char what[64];
    snprintf(what, sizeof what, "cudaMalloc of %zu bytes", bytes);
    return cuda_fail(e, what);
  }
  return PF_OK;
}

pf_status pf_cuda_free(void* ptr) {
  if (ptr == nullptr) return PF_OK;
  if (cudaError_t e = cudaFree(ptr)) return cuda_fail(e, "cudaFree");
  return PF_OK;
}

static pf_status copy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, pf_cuda_stream stream,
                      bool wait, const char* what) {
  if (bytes == 0) return PF_OK;
  if (dst == nullptr || src == nullptr)
    return fail(PF_ERR_ARGUMENT, "Expected buffers for %s but received null", dst ? "src" : "dst");
  cudaError_t e = cudaMemcpyAsync(dst, src, bytes, kind, to_cuda(stream));
  if (!e && wait) e = cudaStreamSynchronize(to_cuda(stream));
  if (e) return cuda_fail(e, what);
  return PF_OK;
}

pf_status pf_cuda_memcpy_h2d(void* dst, const void* src, size_t bytes, pf_cuda_stream stream) {
  return copy(dst, src, bytes, cudaMemcpyHostToDevice, stream, true, "cudaMemcpyAsync host to device");
}
pf_status pf_cuda_memcpy_d2h(void* dst, const void* src, size_t bytes, pf_cuda_stream stream) {
  return copy(dst, src, bytes, cudaMemcpyDeviceToHost, stream, true, "cudaMemcpyAsync device to host");
}
pf_status pf_cuda_memcpy_d2d(void* dst, const void* src, size_t bytes, pf_cuda_stream stream) {
  return copy(dst, src, bytes, cudaMemcpyDeviceToDevice, stream, false, "cudaMemcpyAsync device to device");
}

pf_status pf_cuda_memset(void* dst, int byte_value, size_t bytes, pf_cuda_stream stream) {
  if (bytes == 0) return PF_OK;
  if (dst == nullptr) return fail(PF_ERR_ARGUMENT, "Expected a buffer for dst but received null");
  if (cudaError_t e = cudaMemsetAsync(dst, byte_value, bytes, to_cuda(stream))) return cuda_fail(e, "cudaMemsetAsync");
  return PF_OK;
}

pf_status pf_cuda_stream_create(pf_cuda_stream* out) {
  if (out == nullptr) return fail(PF_ERR_ARGUMENT, "Expected a pointer for out but received null");
  cudaStream_t s = nullptr;
  if (cudaError_t e = cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking)) return cuda_fail(e, "cudaStreamCreate");
  *out = reinterpret_cast<pf_cuda_stream>(s);
  return PF_OK;
}

pf_status pf_cuda_stream_destroy(pf_cuda_stream stream) {
  if (stream == nullptr) return PF_OK;
  if (cudaError_t e = cudaStreamDestroy(to_cuda(stream))) return cuda_fail(e, "cudaStreamDestroy");
  return PF_OK;
}

pf_status pf_cuda_stream_sync(pf_cuda_stream stream) {
  if (cudaError_t e = cudaStreamSynchronize(to_cuda(stream))) return cuda_fail(e, "cudaStreamSynchronize");
  return PF_OK;
}

pf_status pf_cuda_event_create(pf_cuda_event* out) {
  if (out == nullptr) return fail(PF_ERR_ARGUMENT, "Expected a pointer for out but received null");
  cudaEvent_t ev = nullptr;
  if (cudaError_t e = cudaEventCreate(&ev)) return cuda_fail(e, "cudaEventCreate");
  *out = reinterpret_cast<pf_cuda_event>(ev);
  return PF_OK;
}

pf_status pf_cuda_event_destroy(pf_cuda_event event) {
  if (event == nullptr) return PF_OK;
  if (cudaError_t e = cudaEventDestroy(reinterpret_cast<cudaEvent_t>(event))) return cuda_fail(e, "cudaEventDestroy");
  return PF_OK;
}

pf_status pf_cuda_event_record(pf_cuda_event event, pf_cuda_stream stream) {
  if (event == nullptr) return fail(PF_ERR_ARGUMENT, "Expected an event for event but received null");
  if (cudaError_t e = cudaEventRecord(reinterpret_cast<cudaEvent_t>(event), to_cuda(stream)))
    return cuda_fail(e, "cudaEventRecord");
  return PF_OK;
}

pf_status pf_cuda_event_elapsed_ms(pf_cuda_event start, pf_cuda_event end, float* ms) {
  if (!start || !end || !ms)
    return fail(PF_ERR_ARGUMENT, "Expected %s for %s but received null", ms ? "an event" : "a pointer",
                !start ? "start" : !end ? "end" : "ms");
  cudaError_t e = cudaEventSynchronize(reinterpret_cast<cudaEvent_t>(end));
  if (!e) e = cudaEventElapsedTime(ms, reinterpret_cast<cudaEvent_t>(start), reinterpret_cast<cudaEvent_t>(end));
  if (e) return cuda_fail(e, "cudaEventElapsedTime");
  return PF_OK;
}

pf_status pf_cuda_check(pf_cuda_stream stream) {
  const pf::cuda::DeviceState* dev = nullptr;
  if (pf_status s = pf::cuda::current_device(&dev)) return s;
  unsigned long long key = pf::cuda::kNoFault;
  cudaError_t e = cudaStreamSynchronize(to_cuda(stream));
  if (!e) e = cudaMemcpy(&key, dev->fault, sizeof key, cudaMemcpyDeviceToHost);
  if (e) return cuda_fail(e, "pf_cuda_check");
  if (key == pf::cuda::kNoFault) return PF_OK;
  if ((e = cudaMemset(dev->fault, 0xff, sizeof key))) return cuda_fail(e, "pf_cuda_check");
  const unsigned long long kind = key >> 56;
  const long long index = (long long)(key & ((1ull << 56) - 1));
  return fail(kind == pf::cuda::kFaultIds || kind == pf::cuda::kFaultSlots ? PF_ERR_ARGUMENT : PF_ERR_VALUE,
              "An op queued on device %d with sync_checks off found %s at index %lld (that op skipped it)", dev->id,
              pf::cuda::fault_what(kind), index);
}

}  // extern "C"
