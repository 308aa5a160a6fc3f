// The addon's entry point: registers one function per operation (sync and async) and the
// LoraBank class. No maths here; see kernels/.
#include <napi.h>

#include "lora_bank.h"
#include "ops.h"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  using namespace pfn;
  exports.Set("LoraBank", LoraBank::Init(env));
  const struct {
    const char* name;
    Napi::Value (*fn)(const Napi::CallbackInfo&);
  } fns[] = {
      {"topkSoftmax", TopkSoftmax},   {"topkSoftmaxAsync", TopkSoftmaxAsync},
      {"loraMoe", LoraMoe},           {"loraMoeAsync", LoraMoeAsync},
      {"foldExperts", FoldExperts},   {"foldExpertsAsync", FoldExpertsAsync},
      {"mergeExperts", MergeExperts}, {"mergeExpertsAsync", MergeExpertsAsync},
      {"info", Info},                 {"setThreads", SetThreads},
      {"setSimd", SetSimd},
  };
  for (const auto& f : fns) exports.Set(f.name, Napi::Function::New(env, f.fn, f.name));
  return exports;
}

}  // namespace

NODE_API_MODULE(personafuse, Init)
