// LoraBank: the JS handle of a packed pf_bank. Jobs hold a shared_ptr, so dispose() during an
// async call frees the weights only when that call is done.
#ifndef PF_NATIVE_LORA_BANK_H
#define PF_NATIVE_LORA_BANK_H

#include <napi.h>

#include <memory>

#include "personafuse.h"

namespace pfn {

class LoraBank : public Napi::ObjectWrap<LoraBank> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit LoraBank(const Napi::CallbackInfo& info);

  // The bank behind a JS argument, or a TypeError naming `arg` (disposed banks too).
  static std::shared_ptr<const pf_bank> from(Napi::Env env, const Napi::Value& v, const char* arg);

 private:
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  Napi::Value Bytes(const Napi::CallbackInfo& info);

  std::shared_ptr<pf_bank> bank_;
};

}  // namespace pfn
#endif
