// The CUDA bank's memory layout, built on the host: pf_cuda_bank_create packs with it and
// uploads the bytes; the CPU emulation test (kernels/tests/emu) packs with it and runs the
// kernels over host memory. Plain C++, no CUDA headers.
//
// PEFT stores A [E, r, din] and B [E, dout, r]; the bank keeps each expert rank-outer, only its
// own r_e rows (padding is neither stored nor read):
//   a[e]   [r_e, lda]   A_e rows (lda = din rounded up to 16 bytes, zero-filled)
//   bt[e]  [r_e, ldb]   B_eᵀ rows (ldb = dout rounded up to 16 bytes, zero-filled)
// so shrink reads A along din, expand and fold read Bᵀ along dout, and merge reads both along
// its output rows and columns, always with aligned, coalesced 16-byte loads. (The CPU bank
// keeps Aᵀ [din, r_e] instead: a CPU core streams one row of r_e values per input element.)
// One block of bytes holds a | bt | scales [E] f32 | ranks [E] i32 | a_off [E] | b_off [E] i64
// (element offsets of a[e], bt[e]), each part 256-byte aligned.
#ifndef PF_CUDA_BANK_PACK_H
#define PF_CUDA_BANK_PACK_H

#include <stdint.h>
#include <string.h>

#include <vector>

#include "../common/lane_math.h"
#include "personafuse.h"

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

namespace pf {
namespace cuda {

struct PackedBank {
  std::vector<uint8_t> bytes;  // the whole block, ready to copy to the device
  std::vector<int32_t> ranks;  // r_e
  size_t a_bytes = 0, b_bytes = 0, s_bytes = 0, r_bytes = 0, o_bytes = 0;
  size_t weight_bytes = 0;     // bytes of packed weights (no padding between parts)
  int64_t lda = 0, ldb = 0;
};

inline size_t align256(size_t n) { return (n + 255) / 256 * 256; }

// Arguments as pf_bank_create's, already checked (ranks and scales may be null). Throws
// std::bad_alloc.
inline PackedBank pack_bank(int32_t experts, int32_t rank, int32_t din, int32_t dout, pf_dtype dtype, const void* a,
                            const void* b, const float* scales, const int32_t* ranks) {
  PackedBank p;
  const size_t es = dtype == PF_F32 ? 4 : 2;
  p.lda = pitch16(din, dtype);
  p.ldb = pitch16(dout, dtype);
  p.ranks.assign(experts, rank);
  if (ranks) p.ranks.assign(ranks, ranks + experts);
  std::vector<int64_t> a_off(experts), b_off(experts);
  int64_t a_total = 0, b_total = 0;
  for (int32_t e = 0; e < experts; ++e) {
    a_off[e] = a_total;
    b_off[e] = b_total;
    a_total += (int64_t)p.ranks[e] * p.lda;
    b_total += (int64_t)p.ranks[e] * p.ldb;
  }
  p.a_bytes = align256(a_total * es);
  p.b_bytes = align256(b_total * es);
  p.s_bytes = align256(experts * 4);
  p.r_bytes = align256(experts * 4);
  p.o_bytes = align256(experts * 8);
  p.weight_bytes = (size_t)(a_total + b_total) * es;
  p.bytes.assign(p.a_bytes + p.b_bytes + p.s_bytes + p.r_bytes + 2 * p.o_bytes, 0);
  uint8_t* ha = p.bytes.data();
  uint8_t* hb = ha + p.a_bytes;
  const uint8_t* pa = static_cast<const uint8_t*>(a);
  const uint8_t* pb = static_cast<const uint8_t*>(b);
  for (int32_t e = 0; e < experts; ++e) {
    const int64_t re = p.ranks[e];
    const uint8_t* ae = pa + (int64_t)e * rank * din * es;   // A_e [rank, din]
    const uint8_t* be = pb + (int64_t)e * dout * rank * es;  // B_e [dout, rank]
    for (int64_t q = 0; q < re; ++q) memcpy(ha + (a_off[e] + q * p.lda) * es, ae + q * din * es, din * es);
    for (int64_t o = 0; o < dout; ++o)
      for (int64_t q = 0; q < re; ++q) memcpy(hb + (b_off[e] + q * p.ldb + o) * es, be + (o * rank + q) * es, es);
  }
  uint8_t* tail = hb + p.b_bytes;
  float* hs = reinterpret_cast<float*>(tail);
  for (int32_t e = 0; e < experts; ++e) hs[e] = scales ? scales[e] : 1.0f;
  memcpy(tail + p.s_bytes, p.ranks.data(), experts * 4);
  memcpy(tail + p.s_bytes + p.r_bytes, a_off.data(), experts * 8);
  memcpy(tail + p.s_bytes + p.r_bytes + p.o_bytes, b_off.data(), experts * 8);
  return p;
}

// The view of a packed bank whose bytes were copied to `base` (device memory, or the host
// bytes themselves).
inline pf_cuda_bank_view bank_view_at(const PackedBank& p, const void* base, int32_t experts, int32_t rank, int32_t din,
                                      int32_t dout) {
  const uint8_t* d = static_cast<const uint8_t*>(base);
  const uint8_t* tail = d + p.a_bytes + p.b_bytes;
  pf_cuda_bank_view v;
  v.a = d;
  v.bt = d + p.a_bytes;
  v.scales = reinterpret_cast<const float*>(tail);
  v.ranks = reinterpret_cast<const int32_t*>(tail + p.s_bytes);
  v.a_off = reinterpret_cast<const int64_t*>(tail + p.s_bytes + p.r_bytes);
  v.b_off = reinterpret_cast<const int64_t*>(tail + p.s_bytes + p.r_bytes + p.o_bytes);
  v.experts = experts;
  v.rank = rank;
  v.din = din;
  v.dout = dout;
  v.lda = p.lda;
  v.ldb = p.ldb;
  return v;
}

}  // namespace cuda
}  // namespace pf
#endif
