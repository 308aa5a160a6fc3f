// The bank on the device: its packed bytes (layout in bank_pack.h) and their view.
#ifndef PF_CUDA_BANK_CUH
#define PF_CUDA_BANK_CUH

#include <stdint.h>

#include <vector>

#include "bank_pack.h"
#include "runtime.cuh"

struct pf_cuda_bank {
  uint32_t magic = 0;
  int device = -1;
  int32_t experts = 0, rank = 0, din = 0, dout = 0;
  pf_dtype dtype = PF_F32;
  size_t weight_bytes = 0;
  void* mem = nullptr;  // one device allocation: the packed bytes
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
