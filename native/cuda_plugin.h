// The CUDA backend as a plugin: libpersonafuse_cuda.so is opened with dlopen the first time
// something needs it (info() or a device call), never at addon load, so a machine without the
// library, a driver or a GPU still loads the addon and keeps the CPU kernels.
//
// Search order: $PERSONAFUSE_CUDA_LIB (a file, or a folder holding the library), then
// <package root>/build-kernels/release/, then the folder of the addon itself.
#ifndef PF_NATIVE_CUDA_PLUGIN_H
#define PF_NATIVE_CUDA_PLUGIN_H

#include <napi.h>

#include <string>
#include <vector>

#include "personafuse_cuda.h"

namespace pfn {

struct CudaDevice {
  std::string name;
  int32_t major = 0, minor = 0;
  size_t memory_bytes = 0;
};

struct CudaPlugin {
  const pf_cuda_api* api = nullptr;  // set when the library opened and speaks our ABI
  std::string library;               // the file that was opened
  std::string build_info;
  bool available = false;            // api set and device 0 usable
  std::string reason;                // why not available (empty when it is)
  std::vector<CudaDevice> devices;
  int32_t device = 0;                // the device every op runs on
  pf_cuda_stream stream = nullptr;   // one non-blocking stream for every transfer and op
};

// Loads on first use (main thread only: it is reached from N-API calls) and never unloads:
// device buffers and banks may be freed by finalizers until the process exits.
const CudaPlugin& cuda_plugin();

// The plugin when a device is usable, or an Error carrying the reason.
const CudaPlugin& require_cuda(Napi::Env env, const std::string& what);

// Makes the plugin's device current on the calling thread (ops run on the current device, and
// async jobs run on libuv pool threads).
pf_status cuda_enter(const CudaPlugin& p);

// The plugin's last error on this thread (per thread, like pf_last_error).
std::string cuda_error(const CudaPlugin& p);

}  // namespace pfn
#endif
