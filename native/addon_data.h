// State the addon keeps per Node environment (the main thread and each worker thread that loads
// it get their own): the class constructors that `instanceof` checks and factories need. A
// process-wide copy would be overwritten by the next environment that loads the addon and dangle
// once that worker exits.
#pragma once

#include <napi.h>

namespace pfn {

struct AddonData {
  Napi::FunctionReference lora_bank;
  Napi::FunctionReference device_tensor;
};

inline AddonData& addon_data(Napi::Env env) { return *env.GetInstanceData<AddonData>(); }

}  // namespace pfn
