// The device path of each op (native/cuda_<op>.cc), called by native/<op>.cc when its
// arguments are on the device: same arguments, same checks and error wording as the CPU path,
// every array a DeviceTensor, outputs the op allocates returned as DeviceTensors.
#ifndef PF_NATIVE_CUDA_OPS_H
#define PF_NATIVE_CUDA_OPS_H

#include <napi.h>

namespace pfn {
Napi::Value CudaTopkSoftmax(const Napi::CallbackInfo& info, bool async);
Napi::Value CudaLoraMoe(const Napi::CallbackInfo& info, bool async);
Napi::Value CudaFoldExperts(const Napi::CallbackInfo& info, bool async);
Napi::Value CudaMergeExperts(const Napi::CallbackInfo& info, bool async);

// setCudaOption(name, value) / getCudaOption(name) (native/cuda_options.cc)
Napi::Value CudaSetOption(const Napi::CallbackInfo& info);
Napi::Value CudaGetOption(const Napi::CallbackInfo& info);

// The reason in TypeErrors for device arguments given to an op whose bank is on the CPU.
extern const char* const kHostBankHint;
}  // namespace pfn
#endif
