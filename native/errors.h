// One error factory, fixed wording, for every argument check of the addon:
//   "Expected <what> for <argument> but received <value>"
// TypeError when the kind of value is wrong, RangeError when its size or contents are.
#ifndef PF_NATIVE_ERRORS_H
#define PF_NATIVE_ERRORS_H

#include <napi.h>

#include <string>

#include "personafuse.h"

namespace pfn {

// "Float32Array of length 12", "number 3.5", "undefined", ... for messages.
std::string describe(const Napi::Value& v);

[[noreturn]] void throw_type(Napi::Env env, const std::string& arg, const std::string& expected,
                             const Napi::Value& received);
[[noreturn]] void throw_range(Napi::Env env, const std::string& arg, const std::string& expected,
                              const std::string& received);

// A kernel's failure as a JS error: argument and value failures are RangeErrors.
Napi::Error status_error(Napi::Env env, pf_status status, const std::string& message);

}  // namespace pfn
#endif
