// The addon's functions, one file each (native/<op>.cc). Each op takes host arrays with a CPU
// bank, or DeviceTensors with a bank on cuda (logits decides for topkSoftmax): one job per op
// over the two (native/backend.h).
#ifndef PF_NATIVE_OPS_H
#define PF_NATIVE_OPS_H

#include <napi.h>

namespace pfn {
Napi::Value TopkSoftmax(const Napi::CallbackInfo& info);
Napi::Value TopkSoftmaxAsync(const Napi::CallbackInfo& info);
Napi::Value LoraMoe(const Napi::CallbackInfo& info);
Napi::Value LoraMoeAsync(const Napi::CallbackInfo& info);
Napi::Value FoldExperts(const Napi::CallbackInfo& info);
Napi::Value FoldExpertsAsync(const Napi::CallbackInfo& info);
Napi::Value MergeExperts(const Napi::CallbackInfo& info);
Napi::Value MergeExpertsAsync(const Napi::CallbackInfo& info);
Napi::Value Info(const Napi::CallbackInfo& info);
Napi::Value SetThreads(const Napi::CallbackInfo& info);
Napi::Value SetSimd(const Napi::CallbackInfo& info);
// tuneAllocator(mmapThreshold, trimThreshold) (native/allocator.cc)
Napi::Value TuneAllocator(const Napi::CallbackInfo& info);
// setCudaOption(name, value) / getCudaOption(name) (native/cuda_options.cc)
Napi::Value CudaSetOption(const Napi::CallbackInfo& info);
Napi::Value CudaGetOption(const Napi::CallbackInfo& info);
}  // namespace pfn
#endif
