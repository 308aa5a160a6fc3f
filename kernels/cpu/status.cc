#include "status.h"

#include <stdarg.h>
#include <stdio.h>

#include "../common/status_text.h"

#include "simd/ops.h"
#include "thread_pool.h"

namespace pf {
namespace {
thread_local char g_last_error[512] = "";
}

pf_status fail(pf_status status, const char* fmt, ...) {
  va_list args;
  va_start(args, fmt);
  vsnprintf(g_last_error, sizeof g_last_error, fmt, args);
  va_end(args);
  return status;
}

}  // namespace pf

extern "C" {

const char* pf_last_error(void) { return pf::g_last_error; }

const char* pf_status_name(pf_status s) { return pf_status_text(s); }

const char* pf_simd_name(void) { return pf::simd().name; }
int pf_num_threads(void) { return pf::num_threads(); }
void pf_set_num_threads(int n) { pf::set_num_threads(n); }

pf_status pf_set_simd(const char* name) {
  if (name == nullptr || !pf::set_simd_cap(name))
    return pf::fail(PF_ERR_ARGUMENT, "Expected one of scalar, avx2, avx512 for simd but received %s",
                    name ? name : "null");
  return PF_OK;
}

}  // extern "C"
