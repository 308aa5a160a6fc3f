// pf_cuda_bank_create: checks as pf_bank_create, packs on the host (bank_pack.h), uploads once.
#include <new>

#include "../common/bank_args.h"
#include "bank.cuh"

namespace pf {
namespace cuda {

pf_status check_bank(const pf_cuda_bank* bank) {
  if (pf_status s = check_bank_handle(bank, fail)) return s;
  if (bank->magic != kBankMagic)
    return fail(PF_ERR_ARGUMENT, "Expected a bank made by pf_cuda_bank_create for bank but received another object");
  return PF_OK;
}

pf_status check_bank_device(const pf_cuda_bank& bank, const DeviceState& dev) {
  if (bank.device != dev.id)
    return fail(PF_ERR_ARGUMENT, "Expected a bank on the current device %d for bank but it lives on device %d", dev.id,
                bank.device);
  return PF_OK;
}

}  // namespace cuda
}  // namespace pf

extern "C" {

pf_status pf_cuda_bank_create(int32_t experts, int32_t rank, int32_t din, int32_t dout, pf_dtype dtype,
                              const void* a, const void* b, const float* scales, const int32_t* ranks,
                              pf_cuda_bank** out) {
  using pf::cuda::fail;
  if (pf_status s = pf::check_bank_create(experts, rank, din, dout, dtype, a, b, scales, ranks, out, fail)) return s;

  const pf::cuda::DeviceState* dev = nullptr;
  if (pf_status s = pf::cuda::current_device(&dev)) return s;

  pf_cuda_bank* bank = new (std::nothrow) pf_cuda_bank();
  if (bank == nullptr) return fail(PF_ERR_MEMORY, "Could not allocate the bank");
  try {
    const pf::cuda::PackedBank packed = pf::cuda::pack_bank(experts, rank, din, dout, dtype, a, b, scales, ranks);
    cudaError_t e = cudaMalloc(&bank->mem, packed.bytes.size());
    if (e) {
      bank->mem = nullptr;
      delete bank;
      return pf::cuda::cuda_fail(e, "cudaMalloc of the bank");
    }
    if ((e = cudaMemcpy(bank->mem, packed.bytes.data(), packed.bytes.size(), cudaMemcpyHostToDevice))) {
      cudaFree(bank->mem);
      delete bank;
      return pf::cuda::cuda_fail(e, "cudaMemcpy of the bank");
    }
    bank->view = pf::cuda::bank_view_at(packed, bank->mem, experts, rank, din, dout);
    bank->ranks = packed.ranks;
    bank->weight_bytes = packed.weight_bytes;
  } catch (const std::bad_alloc&) {
    if (bank->mem) cudaFree(bank->mem);
    delete bank;
    return fail(PF_ERR_MEMORY, "Could not allocate the bank's %d x %d x %d host staging copy", experts, rank,
                din + dout);
  }
  bank->experts = experts;
  bank->rank = rank;
  bank->din = din;
  bank->dout = dout;
  bank->dtype = dtype;
  bank->device = dev->id;
  bank->magic = pf::cuda::kBankMagic;
  *out = bank;
  return PF_OK;
}

void pf_cuda_bank_destroy(pf_cuda_bank* bank) {
  if (bank == nullptr || bank->magic != pf::cuda::kBankMagic) return;
  bank->magic = 0;
  // Free on the bank's device; queued work that still reads it must have finished (as with cudaFree).
  int cur = 0;
  const bool switched = cudaGetDevice(&cur) == cudaSuccess && cur != bank->device &&
                        cudaSetDevice(bank->device) == cudaSuccess;
  cudaFree(bank->mem);
  if (switched) cudaSetDevice(cur);
  cudaGetLastError();
  delete bank;
}

void pf_cuda_bank_shape(const pf_cuda_bank* bank, int32_t* experts, int32_t* rank, int32_t* din, int32_t* dout,
                        pf_dtype* dtype) {
  pf::write_bank_shape(bank, experts, rank, din, dout, dtype);
}

size_t pf_cuda_bank_bytes(const pf_cuda_bank* bank) { return bank ? bank->weight_bytes : 0; }

}  // extern "C"
