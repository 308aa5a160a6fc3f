#include "backend.h"

#include "args.h"
#include "lora_bank.h"

namespace pfn {
namespace {

// The reason in TypeErrors for DeviceTensors given to an op whose bank is on the CPU. (topkSoftmax
// has no bank, but it picks its side from logits, its only array, so this never applies to it.)
const char* const kHostBankHint =
    "the bank is on the CPU: pass host typed arrays, or create the bank with device: 'cuda'";

template <class T>
Array<T> kept(Host::Job& job, const View<T>& view) {
  job.keep(view.value);
  return {view.data, view.length};
}

template <class T>
Array<T> held(Device::Job& job, const Napi::Value& v, const std::shared_ptr<DeviceBuffer>& buffer) {
  job.keep(v);
  return {job.hold<T>(buffer), buffer->length};
}

}  // namespace

// ---- Host ------------------------------------------------------------------------------------

std::shared_ptr<const pf_bank> Host::bank(Job&, const Napi::Value& v, const char* arg) {
  return LoraBank::from(v.Env(), v, arg);
}

BankShape Host::shape(const Job&, const pf_bank* bank) {
  int32_t e, r, i, o;
  pf_dtype dtype;
  pf_bank_shape(bank, &e, &r, &i, &o, &dtype);
  return {e, r, i, o, dtype};
}

Array<float> Host::f32(Job& job, const Napi::Value& v, const char* arg) {
  reject_device(v.Env(), v, arg, "Float32Array", kHostBankHint);
  return kept(job, f32_array(v.Env(), v, arg));
}

Array<int32_t> Host::i32(Job& job, const Napi::Value& v, const char* arg) {
  reject_device(v.Env(), v, arg, "Int32Array", kHostBankHint);
  return kept(job, i32_array(v.Env(), v, arg));
}

Napi::Object Host::new_f32(Job&, Napi::Env env, size_t length, float** data) {
  Napi::Float32Array a = Napi::Float32Array::New(env, length);
  *data = a.Data();
  return a;
}

Napi::Object Host::new_i32(Job&, Napi::Env env, size_t length, int32_t** data) {
  Napi::Int32Array a = Napi::Int32Array::New(env, length);
  *data = a.Data();
  return a;
}

// ---- Device ----------------------------------------------------------------------------------

pf_status Device::Job::finish() const {
  int64_t sync_checks = 1;
  plugin->api->get_option("sync_checks", &sync_checks);
  return sync_checks ? plugin->api->stream_sync(plugin->stream) : plugin->api->check(plugin->stream);
}

std::shared_ptr<const pf_cuda_bank> Device::bank(Job&, const Napi::Value& v, const char* arg) {
  return LoraBank::from_cuda(v.Env(), v, arg);
}

BankShape Device::shape(const Job& job, const pf_cuda_bank* bank) {
  int32_t e, r, i, o;
  pf_dtype dtype;
  job.plugin->api->bank_shape(bank, &e, &r, &i, &o, &dtype);
  return {e, r, i, o, dtype};
}

Array<float> Device::f32(Job& job, const Napi::Value& v, const char* arg) {
  return held<float>(job, v, DeviceTensor::from(v.Env(), v, arg, ElemType::F32));
}

Array<int32_t> Device::i32(Job& job, const Napi::Value& v, const char* arg) {
  return held<int32_t>(job, v, DeviceTensor::from(v.Env(), v, arg, ElemType::I32));
}

Napi::Object Device::new_f32(Job& job, Napi::Env env, size_t length, float** data) {
  Napi::Object t = DeviceTensor::New(env, ElemType::F32, length);
  *data = job.hold<float>(DeviceTensor::from(env, t, "an output", ElemType::F32));
  return t;
}

Napi::Object Device::new_i32(Job& job, Napi::Env env, size_t length, int32_t** data) {
  Napi::Object t = DeviceTensor::New(env, ElemType::I32, length);
  *data = job.hold<int32_t>(DeviceTensor::from(env, t, "an output", ElemType::I32));
  return t;
}

}  // namespace pfn
