// Reading arguments: every typed array is checked for its exact type and its length against
// the shape before any pointer is handed to a kernel. Views are zero-copy; async workers keep
// a reference so the memory outlives the call.
#ifndef PF_NATIVE_ARGS_H
#define PF_NATIVE_ARGS_H

#include <napi.h>

#include <string>

#include "errors.h"

namespace pfn {

template <class T>
struct View {
  T* data = nullptr;
  size_t length = 0;
  Napi::Value value;  // the JS array, for references in async workers
};

View<float> f32_array(Napi::Env env, const Napi::Value& v, const std::string& arg);
View<int32_t> i32_array(Napi::Env env, const Napi::Value& v, const std::string& arg);
View<uint16_t> u16_array(Napi::Env env, const Napi::Value& v, const std::string& arg);

// Throws RangeError unless length == expected; `shape` explains it, e.g. "T * experts".
void expect_length(Napi::Env env, size_t length, size_t expected, const std::string& arg,
                   const std::string& shape);

// length / unit, or a RangeError naming `arg` unless length is a multiple of unit; `unit_name`
// says what unit is, e.g. "din" reads "a length that is a multiple of din (4096)".
size_t count_of(Napi::Env env, size_t length, int64_t unit, const std::string& arg,
                const std::string& unit_name);

// An integer in [lo, hi] or a TypeError/RangeError naming `arg`.
int64_t integer(Napi::Env env, const Napi::Value& v, const std::string& arg, int64_t lo, int64_t hi);

// Optional property of an options object (undefined when the object or the key is absent).
Napi::Value option(const Napi::Value& opts, const char* key, const std::string& arg);

}  // namespace pfn
#endif
