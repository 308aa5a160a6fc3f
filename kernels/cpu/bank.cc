#include "bank.h"

#include <math.h>
#include <string.h>

#include <new>

#include "status.h"
#include "../common/bank_args.h"

namespace pf {

pf_status check_bank(const pf_bank* bank) { return check_bank_handle(bank, fail); }

pf_status check_ids(const int32_t* ids, int64_t count, int32_t experts, const char* name) {
  for (int64_t i = 0; i < count; ++i)
    if (ids[i] < -1 || ids[i] >= experts)
      return fail(PF_ERR_ARGUMENT,
                  "Expected expert ids between -1 and %d for %s but received %d at index %lld",
                  experts - 1, name, ids[i], (long long)i);
  return PF_OK;
}

pf_status check_finite(const float* v, int64_t count, const char* name) {
  for (int64_t i = 0; i < count; ++i)
    if (!isfinite(v[i]))
      return fail(PF_ERR_VALUE, "Expected finite numbers for %s but received %g at index %lld",
                  name, (double)v[i], (long long)i);
  return PF_OK;
}

}  // namespace pf

extern "C" {

pf_status pf_bank_create(int32_t experts, int32_t rank, int32_t din, int32_t dout, pf_dtype dtype,
                         const void* a, const void* b, const float* scales, const int32_t* ranks,
                         pf_bank** out) {
  using pf::fail;
  if (pf_status s = pf::check_bank_create(experts, rank, din, dout, dtype, a, b, scales, ranks, out, fail)) return s;

  pf_bank* bank = new (std::nothrow) pf_bank();
  if (bank == nullptr) return fail(PF_ERR_MEMORY, "Could not allocate the bank");
  try {
    bank->experts = experts;
    bank->rank = rank;
    bank->din = din;
    bank->dout = dout;
    bank->dtype = dtype;
    bank->scales.assign(experts, 1.0f);
    if (scales) bank->scales.assign(scales, scales + experts);
    bank->ranks.assign(experts, rank);
    if (ranks) bank->ranks.assign(ranks, ranks + experts);
    bank->at_off.resize(experts);
    bank->bt_off.resize(experts);
    int64_t at_total = 0, bt_total = 0;
    for (int32_t e = 0; e < experts; ++e) {
      bank->at_off[e] = at_total;
      bank->bt_off[e] = bt_total;
      at_total += (int64_t)bank->ranks[e] * din;
      bt_total += (int64_t)bank->ranks[e] * dout;
    }
    const int64_t es = bank->elem();
    bank->at.resize(at_total * es);
    bank->bt.resize(bt_total * es);
    // Transpose by element size; the bytes are copied unchanged (no rounding at load).
    const uint8_t* pa = static_cast<const uint8_t*>(a);
    const uint8_t* pb = static_cast<const uint8_t*>(b);
    for (int32_t e = 0; e < experts; ++e) {
      const int64_t re = bank->ranks[e];
      uint8_t* at = bank->at.data() + bank->at_off[e] * es;
      uint8_t* bt = bank->bt.data() + bank->bt_off[e] * es;
      const uint8_t* ae = pa + (int64_t)e * rank * din * es;   // A_e [rank, din]
      const uint8_t* be = pb + (int64_t)e * dout * rank * es;  // B_e [dout, rank]
      for (int64_t q = 0; q < re; ++q)
        for (int64_t i = 0; i < din; ++i) memcpy(at + (i * re + q) * es, ae + (q * din + i) * es, es);
      for (int64_t o = 0; o < dout; ++o)
        for (int64_t q = 0; q < re; ++q) memcpy(bt + (q * dout + o) * es, be + (o * rank + q) * es, es);
    }
  } catch (const std::bad_alloc&) {
    delete bank;
    return fail(PF_ERR_MEMORY, "Could not allocate the bank's %lld x %d x %d weights",
                (long long)experts, rank, din + dout);
  }
  *out = bank;
  return PF_OK;
}

void pf_bank_destroy(pf_bank* bank) { delete bank; }

void pf_bank_shape(const pf_bank* bank, int32_t* experts, int32_t* rank, int32_t* din, int32_t* dout,
                   pf_dtype* dtype) {
  pf::write_bank_shape(bank, experts, rank, din, dout, dtype);
}

size_t pf_bank_bytes(const pf_bank* bank) {
  return bank ? bank->at.size() + bank->bt.size() : 0;
}

}  // extern "C"
