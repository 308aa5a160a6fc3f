// The addon's entry point: registers one function per operation (sync and async) and the
// LoraBank and DeviceTensor classes. No maths here; see kernels/. Nothing here touches CUDA:
// the plugin opens on first use (native/cuda_plugin.cc), so the addon loads anywhere.
#include <napi.h>

#include "addon_data.h"
#include "device_tensor.h"
#include "lora_bank.h"
#include "ops.h"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  using namespace pfn;
  env.SetInstanceData(new AddonData());  // freed by Node when this environment ends
  exports.Set("LoraBank", LoraBank::Init(env));
  exports.Set("DeviceTensor", DeviceTensor::Init(env));
  const struct {
    const char* name;
    Napi::Value (*fn)(const Napi::CallbackInfo&);
  } fns[] = {
      {"topkSoftmax", TopkSoftmax},   {"topkSoftmaxAsync", TopkSoftmaxAsync},
      {"loraMoe", LoraMoe},           {"loraMoeAsync", LoraMoeAsync},
      {"foldExperts", FoldExperts},   {"foldExpertsAsync", FoldExpertsAsync},
      {"mergeExperts", MergeExperts}, {"mergeExpertsAsync", MergeExpertsAsync},
      {"info", Info},                 {"setThreads", SetThreads},
      {"setSimd", SetSimd},           {"tuneAllocator", TuneAllocator},
      {"setCudaOption", CudaSetOption}, {"getCudaOption", CudaGetOption},
  };
  for (const auto& f : fns) exports.Set(f.name, Napi::Function::New(env, f.fn, f.name));
  return exports;
}

}  // namespace

NODE_API_MODULE(personafuse, Init)
