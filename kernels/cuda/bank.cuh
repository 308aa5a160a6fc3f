// The bank on the device. PEFT stores A [E, r, din] and B [E, dout, r]; here each expert is
// kept rank-outer, only its own r_e rows (padding is neither stored nor read):
//   a[e]   [r_e, lda]   A_e rows (lda = din rounded up to 16 bytes, zero-filled)
//   bt[e]  [r_e, ldb]   B_eᵀ rows (ldb = dout rounded up to 16 bytes, zero-filled)
// so shrink reads A along din, expand and fold read Bᵀ along dout, and merge reads both along
// its output rows and columns, always with aligned, coalesced 16-byte loads. (The CPU bank
// keeps Aᵀ [din, r_e] instead: a CPU core streams one row of r_e values per input element.)
#ifndef PF_CUDA_BANK_CUH
#define PF_CUDA_BANK_CUH

#include <stdint.h>

#include <vector>

#include "runtime.cuh"

// What kernels receive, by value.
struct pf_cuda_bank_view {
  const void* a;         // packed A rows, bank dtype
  const void* bt;        // packed Bᵀ rows, bank dtype
  const float* scales;   // [E]
  const int32_t* ranks;  // [E] r_e
  const int64_t* a_off;  // [E] element offset of a[e]
  const int64_t* b_off;  // [E] element offset of bt[e]
  int32_t experts, rank, din, dout;
  int64_t lda, ldb;
};

struct pf_cuda_bank {
  uint32_t magic = 0;
  int device = -1;
  int32_t experts = 0, rank = 0, din = 0, dout = 0;
  pf_dtype dtype = PF_F32;
  size_t weight_bytes = 0;
  void* mem = nullptr;  // one device allocation: weights, then scales, ranks, offsets
  pf_cuda_bank_view view{};
  std::vector<int32_t> ranks;  // host copy of r_e
};

namespace pf {
namespace cuda {
constexpr uint32_t kBankMagic = 0x70666362u;  // "pfcb"
// A bank made by pf_cuda_bank_create (and not destroyed).
pf_status check_bank(const pf_cuda_bank* bank);
// ... that lives on the current device.
pf_status check_bank_device(const pf_cuda_bank& bank, const DeviceState& dev);
}  // namespace cuda
}  // namespace pf

#endif
