// LoraBank: the JS handle of a packed bank, on the CPU (pf_bank) or on the CUDA device
// (pf_cuda_bank, from createLoraBank({ device: 'cuda' })). Jobs hold a shared_ptr, so dispose()
// during an async call frees the weights only when that call is done.
#ifndef PF_NATIVE_LORA_BANK_H
#define PF_NATIVE_LORA_BANK_H

#include <napi.h>

#include <memory>

#include "personafuse_cuda.h"

namespace pfn {

class LoraBank : public Napi::ObjectWrap<LoraBank> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit LoraBank(const Napi::CallbackInfo& info);

  // Whether the bank behind a JS argument lives on the device; a TypeError naming `arg` when v
  // is not a LoraBank. Ops call it first to pick their path.
  static bool on_device(Napi::Env env, const Napi::Value& v, const char* arg);

  // The bank behind a JS argument, or a TypeError naming `arg` (disposed banks too).
  static std::shared_ptr<const pf_bank> from(Napi::Env env, const Napi::Value& v, const char* arg);
  static std::shared_ptr<const pf_cuda_bank> from_cuda(Napi::Env env, const Napi::Value& v, const char* arg);

 private:
  static LoraBank* unwrap(Napi::Env env, const Napi::Value& v, const char* arg);
  void create_cuda(Napi::Env env, int32_t experts, int32_t rank, int32_t din, int32_t dout, pf_dtype dtype,
                   const void* a, const void* b, const float* scales, const int32_t* ranks);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  Napi::Value Bytes(const Napi::CallbackInfo& info);
  Napi::Value Device(const Napi::CallbackInfo& info);

  bool cuda_ = false;
  std::shared_ptr<pf_bank> bank_;
  std::shared_ptr<pf_cuda_bank> cuda_bank_;
};

}  // namespace pfn
#endif
