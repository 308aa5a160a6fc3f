#include "device_tensor.h"

#include "addon_data.h"
#include "args.h"

namespace pfn {
namespace {
[[noreturn]] void throw_cuda(Napi::Env env, const CudaPlugin& p, pf_status s) {
  throw status_error(env, s, cuda_error(p));
}

// `length` elements of `type` on the plugin's device, uninitialised (no allocation for 0).
std::shared_ptr<DeviceBuffer> allocate(Napi::Env env, const CudaPlugin& p, ElemType type, size_t length) {
  auto buf = std::make_shared<DeviceBuffer>();
  buf->plugin = &p;
  buf->type = type;
  buf->length = length;
  if (length > 0) {
    pf_status s = cuda_enter(p);
    if (s == PF_OK) s = p.api->malloc_(buf->bytes(), &buf->ptr);
    if (s != PF_OK) throw_cuda(env, p, s);
  }
  return buf;
}
}  // namespace

const char* elem_name(ElemType t) {
  switch (t) {
    case ElemType::F32: return "f32";
    case ElemType::I32: return "i32";
    case ElemType::U16: return "u16";
  }
  return "?";
}

DeviceBuffer::~DeviceBuffer() {
  // A failed free leaves nothing to do but drop the pointer: there is no JS to throw to here.
  if (ptr != nullptr) plugin->api->free_(ptr);
}

Napi::Function DeviceTensor::Init(Napi::Env env) {
  Napi::Function fn = DefineClass(env, "DeviceTensor",
                                  {InstanceMethod("toHost", &DeviceTensor::ToHost),
                                   InstanceMethod("dispose", &DeviceTensor::Dispose),
                                   InstanceAccessor("length", &DeviceTensor::Length, nullptr),
                                   InstanceAccessor("dtype", &DeviceTensor::Dtype, nullptr),
                                   InstanceAccessor("disposed", &DeviceTensor::Disposed, nullptr)});
  addon_data(env).device_tensor = Napi::Persistent(fn);
  return fn;
}

// new DeviceTensor(Float32Array | Int32Array | Uint16Array): a copy on the device.
// Internally: new DeviceTensor(External<shared_ptr<DeviceBuffer>>) adopts a buffer.
DeviceTensor::DeviceTensor(const Napi::CallbackInfo& info) : Napi::ObjectWrap<DeviceTensor>(info) {
  Napi::Env env = info.Env();
  if (info[0].IsExternal()) {
    buffer_ = *info[0].As<Napi::External<std::shared_ptr<DeviceBuffer>>>().Data();
    length_ = buffer_->length;
    type_ = buffer_->type;
    return;
  }
  const Napi::Value v = info[0];
  const char* expected = "Float32Array, Int32Array or Uint16Array";
  if (!v.IsTypedArray()) throw_type(env, "array", expected, v);
  Napi::TypedArray arr = v.As<Napi::TypedArray>();
  switch (arr.TypedArrayType()) {
    case napi_float32_array: type_ = ElemType::F32; break;
    case napi_int32_array: type_ = ElemType::I32; break;
    case napi_uint16_array: type_ = ElemType::U16; break;
    default: throw_type(env, "array", expected, v);
  }
  const CudaPlugin& p = require_cuda(env, "toDevice");
  std::shared_ptr<DeviceBuffer> buf = allocate(env, p, type_, arr.ElementLength());
  if (buf->length > 0) {
    const uint8_t* src = static_cast<const uint8_t*>(arr.ArrayBuffer().Data()) + arr.ByteOffset();
    // On the one stream, so the copy lands after anything queued earlier; h2d returns when done,
    // so the typed array may change right after.
    const pf_status s = p.api->memcpy_h2d(buf->ptr, src, buf->bytes(), p.stream);
    if (s != PF_OK) throw_cuda(env, p, s);
  }
  buffer_ = std::move(buf);
  length_ = buffer_->length;
}

Napi::Object DeviceTensor::New(Napi::Env env, ElemType type, size_t length) {
  const CudaPlugin& p = require_cuda(env, "a device op");
  // The External lives only for this call; the constructor copies the shared_ptr out of it.
  std::shared_ptr<DeviceBuffer> holder = allocate(env, p, type, length);
  return addon_data(env).device_tensor.New({Napi::External<std::shared_ptr<DeviceBuffer>>::New(env, &holder)});
}

bool DeviceTensor::Is(const Napi::Value& v) {
  return v.IsObject() && v.As<Napi::Object>().InstanceOf(addon_data(v.Env()).device_tensor.Value());
}

std::string DeviceTensor::describe_any(const Napi::Value& v) {
  if (!Is(v)) return describe(v);
  const DeviceTensor* t = Unwrap(v.As<Napi::Object>());
  return std::string(t->buffer_ ? "" : "a disposed ") + "DeviceTensor " + elem_name(t->type_) + " of length " +
         std::to_string(t->length_);
}

std::shared_ptr<DeviceBuffer> DeviceTensor::from(Napi::Env env, const Napi::Value& v, const std::string& arg,
                                                 ElemType type) {
  const std::string expected = std::string("a DeviceTensor of ") + elem_name(type);
  if (!Is(v)) {
    const std::string hint = v.IsTypedArray() ? " (the other arguments are on the device: use kernels.toDevice)" : "";
    throw Napi::TypeError::New(env, "Expected " + expected + " for " + arg + " but received " + describe(v) + hint);
  }
  DeviceTensor* t = Unwrap(v.As<Napi::Object>());
  if (t->type_ != type)
    throw Napi::TypeError::New(env, "Expected " + expected + " for " + arg + " but received " + describe_any(v));
  if (!t->buffer_) throw Napi::Error::New(env, "The DeviceTensor passed as " + arg + " is disposed");
  return t->buffer_;
}

void reject_device(Napi::Env env, const Napi::Value& v, const std::string& arg, const std::string& expected,
                   const std::string& why) {
  if (DeviceTensor::Is(v))
    throw Napi::TypeError::New(env, "Expected " + expected + " for " + arg + " but received " +
                                        DeviceTensor::describe_any(v) + " (" + why + ")");
}

Napi::Value DeviceTensor::ToHost(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!buffer_) {
    Napi::Error e = Napi::Error::New(env, "DeviceTensor is disposed");
    e.Set("name", Napi::String::New(env, "DisposedError"));
    throw e;
  }
  Napi::TypedArray out;
  void* dst = nullptr;
  switch (type_) {
    case ElemType::F32: { auto a = Napi::Float32Array::New(env, length_); dst = a.Data(); out = a; break; }
    case ElemType::I32: { auto a = Napi::Int32Array::New(env, length_); dst = a.Data(); out = a; break; }
    case ElemType::U16: { auto a = Napi::Uint16Array::New(env, length_); dst = a.Data(); out = a; break; }
  }
  if (length_ > 0) {
    const CudaPlugin& p = *buffer_->plugin;
    // d2h on the one stream waits for every op already queued on it; an async op queues its
    // work on a pool thread, so await its Promise before reading its output.
    pf_status s = cuda_enter(p);
    if (s == PF_OK) s = p.api->memcpy_d2h(dst, buffer_->ptr, buffer_->bytes(), p.stream);
    if (s != PF_OK) throw_cuda(env, p, s);
  }
  return out;
}

Napi::Value DeviceTensor::Dispose(const Napi::CallbackInfo& info) {
  buffer_.reset();
  return info.Env().Undefined();
}

Napi::Value DeviceTensor::Length(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), (double)length_);
}

Napi::Value DeviceTensor::Dtype(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), elem_name(type_));
}

Napi::Value DeviceTensor::Disposed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), !buffer_);
}

}  // namespace pfn
