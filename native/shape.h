// Bank dimensions as the native layer checks lengths against them.
#ifndef PF_NATIVE_SHAPE_H
#define PF_NATIVE_SHAPE_H

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

}  // namespace pfn
#endif
