// Failure reporting for the C ABI: a status code plus a thread-local message that names the
// argument, in the wording the Node layer also uses ("Expected ... for <arg> but ...").
#ifndef PF_CPU_STATUS_H
#define PF_CPU_STATUS_H

#include "personafuse.h"

namespace pf {

// Records the printf-formatted message for pf_last_error() and returns `status`.
pf_status fail(pf_status status, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

bool set_simd_cap(const char* name);

}  // namespace pf
#endif
