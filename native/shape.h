// Bank dimensions as the native layer checks lengths against them.
#ifndef PF_NATIVE_SHAPE_H
#define PF_NATIVE_SHAPE_H

#include <napi.h>

#include "personafuse.h"

namespace pfn {

struct BankShape {
  int64_t experts = 0, rank = 0, din = 0, dout = 0;
  pf_dtype dtype = PF_F32;
};

inline BankShape shape_of(const pf_bank* bank) {
  int32_t e, r, i, o;
  BankShape s;
  pf_bank_shape(bank, &e, &r, &i, &o, &s.dtype);
  s.experts = e;
  s.rank = r;
  s.din = i;
  s.dout = o;
  return s;
}

// loraMoe's k from the length of ids for T tokens (1 when T = 0), or the RangeError naming
// ids; shared by both paths (native/lora_moe.cc, native/cuda_lora_moe.cc).
int32_t moe_slots(Napi::Env env, int64_t T, size_t ids_length, int64_t experts);

}  // namespace pfn
#endif
