// The fixed names of pf_status values, shared by the CPU and CUDA libraries (each exports its own
// pf_*_status_name so either loads alone).
#ifndef PF_COMMON_STATUS_TEXT_H
#define PF_COMMON_STATUS_TEXT_H

#include "../include/personafuse.h"

static inline const char* pf_status_text(pf_status s) {
  switch (s) {
    case PF_OK: return "ok";
    case PF_ERR_ARGUMENT: return "invalid argument";
    case PF_ERR_VALUE: return "invalid value";
    case PF_ERR_MEMORY: return "out of memory";
    case PF_ERR_BACKEND: return "backend error";
  }
  return "unknown status";
}

#endif
