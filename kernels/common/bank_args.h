// The bank's C ABI contract, shared by the CPU library (cpu/bank.cc) and the CUDA one
// (cuda/bank.cu): the checks of pf_bank_create / pf_cuda_bank_create, the check of a bank handle
// given to an op, and pf_*bank_shape. One contract, so one set of checks and messages; plain
// C++17, no CUDA. `fail` is the calling library's own fail(status, fmt, ...): each library keeps
// its own last-error text.
#ifndef PF_COMMON_BANK_ARGS_H
#define PF_COMMON_BANK_ARGS_H

#include <math.h>
#include <stdint.h>

#include "personafuse.h"

namespace pf {

typedef pf_status (*FailFn)(pf_status status, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

static inline pf_status check_bank_args(int32_t experts, int32_t rank, int32_t din, int32_t dout, pf_dtype dtype,
                                        const void* a, const void* b, const float* scales, const int32_t* ranks,
                                        FailFn fail) {
  if (experts < 1) return fail(PF_ERR_ARGUMENT, "Expected an integer >= 1 for experts but received %d", experts);
  if (rank < 1) return fail(PF_ERR_ARGUMENT, "Expected an integer >= 1 for rank but received %d", rank);
  if (din < 1) return fail(PF_ERR_ARGUMENT, "Expected an integer >= 1 for din but received %d", din);
  if (dout < 1) return fail(PF_ERR_ARGUMENT, "Expected an integer >= 1 for dout but received %d", dout);
  if (dtype != PF_F32 && dtype != PF_F16 && dtype != PF_BF16)
    return fail(PF_ERR_ARGUMENT, "Expected one of f32, f16, bf16 for dtype but received %d", (int)dtype);
  if (a == nullptr || b == nullptr)
    return fail(PF_ERR_ARGUMENT, "Expected weights for %s but received null", a ? "b" : "a");
  if (scales)
    for (int32_t e = 0; e < experts; ++e)
      if (!isfinite(scales[e]))
        return fail(PF_ERR_VALUE, "Expected finite numbers for scales but received %g at index %lld",
                    (double)scales[e], (long long)e);
  if (ranks)
    for (int32_t e = 0; e < experts; ++e)
      if (ranks[e] < 0 || ranks[e] > rank)
        return fail(PF_ERR_ARGUMENT, "Expected integers between 0 and %d for ranks but received %d at index %d",
                    rank, ranks[e], e);
  return PF_OK;
}

// All of pf_bank_create's and pf_cuda_bank_create's checks, in order: the out pointer (cleared
// first, so that a refused call leaves null behind), then the arguments.
template <class Bank>
static inline pf_status check_bank_create(int32_t experts, int32_t rank, int32_t din, int32_t dout, pf_dtype dtype,
                                          const void* a, const void* b, const float* scales, const int32_t* ranks,
                                          Bank** out, FailFn fail) {
  if (out == nullptr) return fail(PF_ERR_ARGUMENT, "Expected a pointer for out but received null");
  *out = nullptr;
  return check_bank_args(experts, rank, din, dout, dtype, a, b, scales, ranks, fail);
}

// A bank handle given to an op. (The CUDA library then checks that it made the object.)
template <class Bank>
static inline pf_status check_bank_handle(const Bank* bank, FailFn fail) {
  if (bank == nullptr) return fail(PF_ERR_ARGUMENT, "Expected a bank for bank but received null");
  return PF_OK;
}

// pf_bank_shape and pf_cuda_bank_shape: a null bank writes nothing, a null pointer is skipped.
template <class Bank>
static inline void write_bank_shape(const Bank* bank, int32_t* experts, int32_t* rank, int32_t* din, int32_t* dout,
                                    pf_dtype* dtype) {
  if (!bank) return;
  if (experts) *experts = bank->experts;
  if (rank) *rank = bank->rank;
  if (din) *din = bank->din;
  if (dout) *dout = bank->dout;
  if (dtype) *dtype = bank->dtype;
}

}  // namespace pf

#endif
