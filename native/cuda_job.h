// The baton on the device: a device op parses and validates its arguments into a CudaJob on
// the main thread (device pointers, shared_ptrs that keep the buffers and the bank alive, the
// output objects), then run() queues the kernel on the plugin's stream and waits for it, either
// right away (sync) or in an AsyncWorker's Execute on a pool thread, so a Promise resolves only
// when the GPU work is done and the event loop never waits on the GPU.
//
// sync_checks (personafuse_cuda.h): with the default 1, each op already waits and reports a
// data fault as the CPU op would; with 0 it returns once queued, so finish() asks pf_cuda_check,
// which waits and reports that op's fault. Either way a call returns or resolves after its work.
#ifndef PF_NATIVE_CUDA_JOB_H
#define PF_NATIVE_CUDA_JOB_H

#include <napi.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "cuda_plugin.h"
#include "device_tensor.h"
#include "job.h"
#include "shape.h"

namespace pfn {

struct CudaJob : Job {
  const CudaPlugin* plugin = nullptr;
  std::vector<std::shared_ptr<DeviceBuffer>> buffers;  // inputs and outputs, alive while queued

  // Adds a buffer to keep and returns its device pointer (typed).
  template <class T>
  T* hold(const std::shared_ptr<DeviceBuffer>& b) {
    buffers.push_back(b);
    return static_cast<T*>(b->ptr);
  }

  // Waits for the stream and collects a fault of an op queued with sync_checks off.
  pf_status finish() const {
    int64_t sync_checks = 1;
    plugin->api->get_option("sync_checks", &sync_checks);
    return sync_checks ? plugin->api->stream_sync(plugin->stream) : plugin->api->check(plugin->stream);
  }
};

inline BankShape shape_of(const CudaPlugin& p, const pf_cuda_bank* bank) {
  int32_t e, r, i, o;
  BankShape s;
  p.api->bank_shape(bank, &e, &r, &i, &o, &s.dtype);
  s.experts = e;
  s.rank = r;
  s.din = i;
  s.dout = o;
  return s;
}

// J: a CudaJob with `pf_status queue()` (the op's calls on plugin->stream).
template <class J>
pf_status cuda_execute(J& job) {
  pf_status s = cuda_enter(*job.plugin);
  if (s == PF_OK) s = job.queue();
  if (s == PF_OK) s = job.finish();
  return s;
}

// The baton's runner for device jobs (job.h): queue, wait, and the plugin's per-thread message.
struct CudaRunner {
  template <class J>
  static pf_status run(J& job) { return cuda_execute(job); }
  template <class J>
  static std::string error(const J& job) { return cuda_error(*job.plugin); }
};

template <class J>
Napi::Value cuda_run_sync(Napi::Env env, J& job) { return run_sync<CudaRunner>(env, job); }

template <class J>
Napi::Value cuda_run_async(Napi::Env env, J&& job) { return run_async<CudaRunner>(env, std::move(job)); }

}  // namespace pfn
#endif
