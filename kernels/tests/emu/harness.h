// What the emulation tests share (emu_lora_moe_test.cc, emu_topk_softmax_test.cc,
// emu_fold_experts_test.cc, emu_merge_experts_test.cc): what the kernel sources need from status.cu, the seeded start and
// the summary, buffers over host memory that show a kernel's missing and stray writes, and banks
// packed as the device's. Include it after the kernel source, once per program.
#ifndef PF_TESTS_EMU_HARNESS_H
#define PF_TESTS_EMU_HARNESS_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <chrono>
#include <vector>

#include "../../cuda/bank.cuh"
#include "../test_support.h"

// What the kernel sources need from the rest of the library (status.cu): launches succeed here.
namespace pf {
namespace cuda {
pf_status check_launch(const char*) { return PF_OK; }
pf_status fail(pf_status status, const char*, ...) { return status; }
}  // namespace cuda
}  // namespace pf

namespace pf_test {

using pf::cuda::kNoFault;

// What a run of an op's launch code gives beside its outputs.
struct Outcome {
  pf_status status = PF_OK;
  unsigned long long fault = kNoFault;  // the fault word
  bool guards_ok = true;                // no write landed outside the outputs
};

// Seeds g_rng from --seed N, or from the clock, and prints the seed with the program's title.
inline void start(int argc, char** argv, const char* title) {
  uint64_t seed = (uint64_t)std::chrono::steady_clock::now().time_since_epoch().count();
  for (int i = 1; i + 1 < argc; ++i)
    if (strcmp(argv[i], "--seed") == 0) seed = strtoull(argv[i + 1], nullptr, 10);
  g_rng.seed(seed);
  printf("%s under the CUDA emulation, seed %llu (repeat with --seed %llu)\n", title, (unsigned long long)seed,
         (unsigned long long)seed);
}

// The last line ("N passed, M failed") and the exit status.
inline int summary() {
  printf("%d passed, %d failed\n", g_pass, g_fail);
  return g_fail ? 1 : 0;
}

constexpr uint32_t kPoison = 0x7fc0deadu;  // an f32 NaN, and no expert id or slot
constexpr uint32_t kCanary = 0x7fc0beefu;

// n values of a 4-byte type between kGuard canary words on each side. The values start on a
// 16-byte boundary, or `skew` values past one (a pointer that is not 16-byte aligned; the words
// skipped are canaries too).
template <class T>
class Guarded {
  static_assert(sizeof(T) == 4, "4-byte values");
  static constexpr size_t kGuard = 64;

 public:
  Guarded(const std::vector<T>& init, int skew = 0) : n_(init.size()), skew_(skew) {
    words_.assign(2 * kGuard + skew + n_, kCanary);
    memcpy(data(), init.data(), n_ * 4);
  }
  // n values holding `bits` (kPoison: every value the kernel must write is NaN until it does)
  Guarded(size_t n, uint32_t bits, int skew = 0) : n_(n), skew_(skew) {
    words_.assign(2 * kGuard + skew + n_, kCanary);
    for (size_t i = 0; i < n_; ++i) words_[kGuard + skew + i] = bits;
  }
  T* data() { return reinterpret_cast<T*>(words_.data() + kGuard + skew_); }
  std::vector<T> values() const {
    std::vector<T> v(n_);
    memcpy(v.data(), words_.data() + kGuard + skew_, n_ * 4);
    return v;
  }
  // No write landed outside the values.
  bool guards_ok() const {
    for (size_t i = 0; i < kGuard + skew_; ++i)
      if (words_[i] != kCanary) return false;
    for (size_t i = kGuard + skew_ + n_; i < words_.size(); ++i)
      if (words_[i] != kCanary) return false;
    return true;
  }

 private:
  std::vector<uint32_t> words_;  // malloc's alignment (16 bytes) at word 0; kGuard words = 256 bytes
  size_t n_;
  int skew_;
};

// A bank packed as pf_cuda_bank_create packs it (bank_pack.h), its view over the host bytes.
struct EmuBank {
  explicit EmuBank(const HostBank& h)
      : packed(pf::cuda::pack_bank(h.E, h.r, h.din, h.dout, h.dt, h.a_data(), h.b_data(), h.scales.data(),
                                   h.ranks.data())) {
    bank.experts = h.E, bank.rank = h.r, bank.din = h.din, bank.dout = h.dout, bank.dtype = h.dt;
    bank.ranks = packed.ranks;
    bank.view = pf::cuda::bank_view_at(packed, packed.bytes.data(), h.E, h.r, h.din, h.dout);
    bank.magic = pf::cuda::kBankMagic;
  }
  EmuBank(const EmuBank&) = delete;  // the view points into packed
  EmuBank& operator=(const EmuBank&) = delete;
  pf::cuda::PackedBank packed;
  pf_cuda_bank bank;
};

template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

}  // namespace pf_test
#endif
