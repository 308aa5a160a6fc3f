// pf_cuda_bank_create: checks as pf_bank_create, packs on the host (see bank.cuh), uploads once.
#include <math.h>
#include <string.h>

#include <new>
#include <vector>

#include "../common/bank_args.h"
#include "../common/lane_math.h"
#include "bank.cuh"

namespace pf {
namespace cuda {

pf_status check_bank(const pf_cuda_bank* bank) {
  if (bank == nullptr) return fail(PF_ERR_ARGUMENT, "Expected a bank for bank but received null");
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

namespace {

size_t align256(size_t n) { return (n + 255) / 256 * 256; }

}  // namespace

extern "C" {

pf_status pf_cuda_bank_create(int32_t experts, int32_t rank, int32_t din, int32_t dout, pf_dtype dtype,
                              const void* a, const void* b, const float* scales, const int32_t* ranks,
                              pf_cuda_bank** out) {
  using pf::cuda::fail;
  if (out == nullptr) return fail(PF_ERR_ARGUMENT, "Expected a pointer for out but received null");
  *out = nullptr;
  if (pf_status s = pf::check_bank_args(experts, rank, din, dout, dtype, a, b, scales, ranks, fail)) return s;

  const pf::cuda::DeviceState* dev = nullptr;
  if (pf_status s = pf::cuda::current_device(&dev)) return s;

  pf_cuda_bank* bank = new (std::nothrow) pf_cuda_bank();
  if (bank == nullptr) return fail(PF_ERR_MEMORY, "Could not allocate the bank");
  const size_t es = dtype == PF_F32 ? 4 : 2;
  const int64_t lda = pf::pitch16(din, dtype), ldb = pf::pitch16(dout, dtype);
  try {
    bank->ranks.assign(experts, rank);
    if (ranks) bank->ranks.assign(ranks, ranks + experts);
    std::vector<int64_t> a_off(experts), b_off(experts);
    int64_t a_total = 0, b_total = 0;
    for (int32_t e = 0; e < experts; ++e) {
      a_off[e] = a_total;
      b_off[e] = b_total;
      a_total += (int64_t)bank->ranks[e] * lda;
      b_total += (int64_t)bank->ranks[e] * ldb;
    }
    // One allocation: a | bt | scales | ranks | a_off | b_off, each part 256-byte aligned.
    const size_t a_bytes = align256(a_total * es), b_bytes = align256(b_total * es);
    const size_t s_bytes = align256(experts * 4), r_bytes = align256(experts * 4), o_bytes = align256(experts * 8);
    const size_t total = a_bytes + b_bytes + s_bytes + r_bytes + 2 * o_bytes;
    std::vector<uint8_t> host(total, 0);
    uint8_t* ha = host.data();
    uint8_t* hb = ha + a_bytes;
    const uint8_t* pa = static_cast<const uint8_t*>(a);
    const uint8_t* pb = static_cast<const uint8_t*>(b);
    for (int32_t e = 0; e < experts; ++e) {
      const int64_t re = bank->ranks[e];
      const uint8_t* ae = pa + (int64_t)e * rank * din * es;   // A_e [rank, din]
      const uint8_t* be = pb + (int64_t)e * dout * rank * es;  // B_e [dout, rank]
      for (int64_t q = 0; q < re; ++q) memcpy(ha + (a_off[e] + q * lda) * es, ae + q * din * es, din * es);
      for (int64_t o = 0; o < dout; ++o)
        for (int64_t q = 0; q < re; ++q) memcpy(hb + (b_off[e] + q * ldb + o) * es, be + (o * rank + q) * es, es);
    }
    float* hs = reinterpret_cast<float*>(hb + b_bytes);
    for (int32_t e = 0; e < experts; ++e) hs[e] = scales ? scales[e] : 1.0f;
    memcpy(hb + b_bytes + s_bytes, bank->ranks.data(), experts * 4);
    memcpy(hb + b_bytes + s_bytes + r_bytes, a_off.data(), experts * 8);
    memcpy(hb + b_bytes + s_bytes + r_bytes + o_bytes, b_off.data(), experts * 8);

    cudaError_t e = cudaMalloc(&bank->mem, total);
    if (e) {
      bank->mem = nullptr;
      delete bank;
      return pf::cuda::cuda_fail(e, "cudaMalloc of the bank");
    }
    if ((e = cudaMemcpy(bank->mem, host.data(), total, cudaMemcpyHostToDevice))) {
      cudaFree(bank->mem);
      delete bank;
      return pf::cuda::cuda_fail(e, "cudaMemcpy of the bank");
    }
    uint8_t* d = static_cast<uint8_t*>(bank->mem);
    bank->view.a = d;
    bank->view.bt = d + a_bytes;
    bank->view.scales = reinterpret_cast<const float*>(d + a_bytes + b_bytes);
    bank->view.ranks = reinterpret_cast<const int32_t*>(d + a_bytes + b_bytes + s_bytes);
    bank->view.a_off = reinterpret_cast<const int64_t*>(d + a_bytes + b_bytes + s_bytes + r_bytes);
    bank->view.b_off = reinterpret_cast<const int64_t*>(d + a_bytes + b_bytes + s_bytes + r_bytes + o_bytes);
    bank->weight_bytes = (size_t)(a_total + b_total) * es;
  } catch (const std::bad_alloc&) {
    delete bank;
    return fail(PF_ERR_MEMORY, "Could not allocate the bank's %d x %d x %d host staging copy", experts, rank,
                din + dout);
  }
  bank->view.experts = experts;
  bank->view.rank = rank;
  bank->view.din = din;
  bank->view.dout = dout;
  bank->view.lda = lda;
  bank->view.ldb = ldb;
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
  if (!bank) return;
  if (experts) *experts = bank->experts;
  if (rank) *rank = bank->rank;
  if (din) *din = bank->din;
  if (dout) *dout = bank->dout;
  if (dtype) *dtype = bank->dtype;
}

size_t pf_cuda_bank_bytes(const pf_cuda_bank* bank) { return bank ? bank->weight_bytes : 0; }

}  // extern "C"
