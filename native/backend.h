// Where an op's data live, as the policy its one job is written over (native/<op>.cc):
//   Host    host typed arrays and a CPU bank (pf_bank); the CPU kernels run on the calling thread
//           (sync) or in an AsyncWorker's Execute
//   Device  DeviceTensors and a bank on cuda (pf_cuda_bank); the op is queued on the plugin's one
//           stream and waited for, the same two ways, so a call returns or resolves after its
//           GPU work and the event loop never waits on the GPU
// An op parses its arguments once, as `template <class P> XJob<P> parse(info)`: the same reads,
// checks and error wording on both sides, in the same order. The policy supplies only how an
// argument is read (a typed array, or a DeviceTensor), where the outputs the op makes live, and
// the runner; each op writes its kernel call twice, as XJob<Host>::launch and
// XJob<Device>::launch, since the two C ABIs differ (the device one takes the stream).
//
// sync_checks (personafuse_cuda.h): with the default 1, each device op already waits and reports
// a data fault as the CPU op would; with 0 it returns once queued, so Device::Job::finish() asks
// pf_cuda_check, which waits and reports that op's fault.
#ifndef PF_NATIVE_BACKEND_H
#define PF_NATIVE_BACKEND_H

#include <napi.h>

#include <memory>
#include <string>
#include <vector>

#include "cuda_plugin.h"
#include "device_tensor.h"
#include "job.h"
#include "personafuse_cuda.h"

namespace pfn {

// An array argument as the kernel sees it: a pointer (host or device memory) and its length.
template <class T>
struct Array {
  T* data = nullptr;  // null when length is 0
  size_t length = 0;
};

// Bank dimensions as the native layer checks lengths against them.
struct BankShape {
  int64_t experts = 0, rank = 0, din = 0, dout = 0;
  pf_dtype dtype = PF_F32;
};

struct Host {
  // The baton's base: the references of Job keep the typed arrays alive while async.
  struct Job : pfn::Job {
    using Runner = CpuRunner;
  };
  using Bank = pf_bank;

  // Nothing to open on the host; `what` names a device op in Device::open's error.
  static void open(Job&, Napi::Env, const char* what) {}
  static std::shared_ptr<const pf_bank> bank(Job&, const Napi::Value& v, const char* arg);
  static BankShape shape(const Job&, const pf_bank* bank);

  // A typed array of exactly that type, kept alive by the job; a DeviceTensor is a TypeError
  // that says the bank is on the CPU.
  static Array<float> f32(Job& job, const Napi::Value& v, const char* arg);
  static Array<int32_t> i32(Job& job, const Napi::Value& v, const char* arg);

  // A new zeroed typed array of `length` elements, the op's output; *data points into it.
  static Napi::Object new_f32(Job& job, Napi::Env env, size_t length, float** data);
  static Napi::Object new_i32(Job& job, Napi::Env env, size_t length, int32_t** data);
};

struct Device {
  // The baton's base: the buffers (and the bank, in the op's job) stay alive while queued.
  struct Job : pfn::Job {
    struct Runner;
    const CudaPlugin* plugin = nullptr;
    std::vector<std::shared_ptr<DeviceBuffer>> buffers;

    // Adds a buffer to keep and returns its device pointer.
    template <class T>
    T* hold(const std::shared_ptr<DeviceBuffer>& b) {
      buffers.push_back(b);
      return static_cast<T*>(b->ptr);
    }
    // Waits for the stream and collects a fault of an op queued with sync_checks off.
    pf_status finish() const;
  };
  using Bank = pf_cuda_bank;

  // The plugin, or an Error "<what> needs a usable CUDA device, but <reason>".
  static void open(Job& job, Napi::Env env, const char* what) { job.plugin = &require_cuda(env, what); }
  static std::shared_ptr<const pf_cuda_bank> bank(Job&, const Napi::Value& v, const char* arg);
  static BankShape shape(const Job& job, const pf_cuda_bank* bank);

  // A DeviceTensor of that element type, held by the job; a host typed array is a TypeError that
  // says the other arguments are on the device.
  static Array<float> f32(Job& job, const Napi::Value& v, const char* arg);
  static Array<int32_t> i32(Job& job, const Napi::Value& v, const char* arg);

  // A new uninitialised DeviceTensor of `length` elements (the op writes it in full, or zeroes it
  // on the stream first); *data is its device pointer.
  static Napi::Object new_f32(Job& job, Napi::Env env, size_t length, float** data);
  static Napi::Object new_i32(Job& job, Napi::Env env, size_t length, int32_t** data);
};

// How a device job runs (job.h's runners): makes the plugin's device current on this thread (a
// pool thread when async), queues the op, waits for it; the failure message is the plugin's, per
// thread like pf_last_error, so the worker reads it on the thread that ran the job.
struct Device::Job::Runner {
  template <class J>
  static pf_status run(J& job) {
    pf_status s = cuda_enter(*job.plugin);
    if (s == PF_OK) s = job.launch();
    if (s == PF_OK) s = job.finish();
    return s;
  }
  template <class J>
  static std::string error(const J& job) { return cuda_error(*job.plugin); }
};

// Runs a parsed job right away or in an AsyncWorker, with its policy's runner.
template <class J>
Napi::Value run_job(Napi::Env env, J job, bool async) {
  if (async) return run_async<typename J::Runner>(env, std::move(job));
  return run_sync<typename J::Runner>(env, job);
}

}  // namespace pfn
#endif
