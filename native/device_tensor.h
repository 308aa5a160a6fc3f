// DeviceTensor: a typed array's worth of device memory (f32, i32 or u16 elements), owned by a
// JS object. Jobs hold the shared_ptr, so dispose() during an async op frees the memory only
// when that op is done; the garbage collector frees what was never disposed.
#ifndef PF_NATIVE_DEVICE_TENSOR_H
#define PF_NATIVE_DEVICE_TENSOR_H

#include <napi.h>

#include <memory>
#include <string>

#include "cuda_plugin.h"

namespace pfn {

enum class ElemType { F32 = 0, I32 = 1, U16 = 2 };

const char* elem_name(ElemType t);  // "f32", "i32", "u16"

struct DeviceBuffer {
  const CudaPlugin* plugin = nullptr;
  void* ptr = nullptr;  // null when length is 0
  size_t length = 0;
  ElemType type = ElemType::F32;
  size_t bytes() const { return length * (type == ElemType::U16 ? 2 : 4); }
  ~DeviceBuffer();
};

class DeviceTensor : public Napi::ObjectWrap<DeviceTensor> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit DeviceTensor(const Napi::CallbackInfo& info);

  // A new tensor of `length` elements, uninitialised (outputs the op writes in full).
  static Napi::Object New(Napi::Env env, ElemType type, size_t length);

  static bool Is(const Napi::Value& v);
  // The buffer behind an argument, or a TypeError naming `arg` (wrong type, element type, or
  // not a DeviceTensor), or an Error when it is disposed.
  static std::shared_ptr<DeviceBuffer> from(Napi::Env env, const Napi::Value& v, const std::string& arg,
                                            ElemType type);
  // "DeviceTensor f32 of length 12" (or "a disposed DeviceTensor"), else errors.h describe().
  static std::string describe_any(const Napi::Value& v);

 private:
  Napi::Value ToHost(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  Napi::Value Length(const Napi::CallbackInfo& info);
  Napi::Value Dtype(const Napi::CallbackInfo& info);
  Napi::Value Disposed(const Napi::CallbackInfo& info);

  std::shared_ptr<DeviceBuffer> buffer_;
  size_t length_ = 0;  // kept after dispose() for messages
  ElemType type_ = ElemType::F32;
};

// Throws a TypeError naming `arg` when v is a DeviceTensor: for the CPU path of an op, whose
// bank and other arguments are host memory. `why` completes the message.
void reject_device(Napi::Env env, const Napi::Value& v, const std::string& arg, const std::string& expected,
                   const std::string& why);

}  // namespace pfn
#endif
