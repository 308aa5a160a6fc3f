// The packed form of a LoRA bank. PEFT stores A [E, r, din] and B [E, dout, r]; every kernel
// here wants the rank innermost on the read side of A and outermost on B, so the bank keeps
//   at[e]  [din, r_e]   (A_eᵀ, only the expert's own rank: padding is neither stored nor read)
//   bt[e]  [r_e, dout]  (B_eᵀ)
// in the bank dtype. Then shrink, expand, fold and merge all stream contiguous rows.
#ifndef PF_CPU_BANK_H
#define PF_CPU_BANK_H

#include <stdint.h>

#include <vector>

#include "personafuse.h"

struct pf_bank {
  int32_t experts = 0, rank = 0, din = 0, dout = 0;
  pf_dtype dtype = PF_F32;
  std::vector<float> scales;            // [E]
  std::vector<int32_t> ranks;           // [E], r_e
  std::vector<int64_t> at_off, bt_off;  // [E], element offsets into at / bt
  std::vector<uint8_t> at, bt;          // packed weights, dtype elements

  const void* at_of(int32_t e) const { return at.data() + at_off[e] * elem(); }
  const void* bt_of(int32_t e) const { return bt.data() + bt_off[e] * elem(); }
  int64_t elem() const { return dtype == PF_F32 ? 4 : 2; }
};

namespace pf {
// Shared argument checks of the ops, each returning PF_OK or a recorded failure.
pf_status check_bank(const pf_bank* bank);
pf_status check_ids(const int32_t* ids, int64_t count, int32_t experts, const char* name);
pf_status check_finite(const float* v, int64_t count, const char* name);
}  // namespace pf

#endif

#include "../common/numeric.h"

namespace pf {
// One bank element as f32 (scalar path for gathers; the streaming loops use SimdOps).
inline float load_as_f32(pf_dtype dt, const void* p, int64_t idx) {
  if (dt == PF_F32) return static_cast<const float*>(p)[idx];
  const uint16_t h = static_cast<const uint16_t*>(p)[idx];
  return dt == PF_F16 ? f16_to_f32(h) : bf16_to_f32(h);
}
}  // namespace pf
