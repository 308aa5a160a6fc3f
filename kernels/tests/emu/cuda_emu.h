// A CPU emulation of the CUDA execution model, for testing kernels on machines without a GPU.
//
// Include this first, then a kernel source (.cu), in a program built with g++ -DPF_CUDA_EMULATE
// and CUDA's include directory (for the vector types). Kernels run as written: each CUDA thread
// is a fiber with its own stack, a block's fibers run in turn on the calling thread,
// and a fiber gives way only where CUDA threads must wait for each other:
//   __syncthreads()           all live threads of the block arrive (exited threads count as
//                             arrived, as on Volta and later), then all go on
//   __shfl_xor_sync, __shfl_up_sync
//                             the lanes named in the mask publish v, wait for each other, read
//                             their partner's, and wait again before the slot can be reused
//   __any_sync(m, p)          likewise, each lane reading the predicates of all lanes in m
//   __syncwarp(m)             the lanes named in m arrive, then go on
// Lanes of one warp that name disjoint masks (groups of lanes working apart) meet apart; masks
// that overlap without being equal, or a lane missing from its own mask, stop the program.
// Blocks run one after another, so a kernel that depends on two blocks running at once (a
// spin-wait between blocks) hangs here: that is reported as a deadlock, as is a barrier that
// some live threads never reach. __shared__ arrays are function statics (one block at a time
// shares them); dynamic shared memory (PF_EXTERN_SHARED) is filled with NaN before each block,
// so a read of shared memory no thread wrote shows up in the results. Launches go through
// PF_LAUNCH (runtime.cuh), so the kernels' own host-side launch code runs too.
//
// Tensor-core fragments (nvcuda::wmma) come from wmma_emu.h, included beside this one.
// What it cannot show: speed, memory-ordering bugs between blocks or between warps without a
// barrier (fibers interleave only at the points above), and the tensor cores' own rounding.
#ifndef PF_TESTS_CUDA_EMU_H
#define PF_TESTS_CUDA_EMU_H

#include <cuda_runtime.h>  // vector types, cudaStream_t and the rest of the host API's types
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <setjmp.h>
#include <string.h>
#include <ucontext.h>

#include <algorithm>
#include <functional>
#include <vector>

// CUDA's host headers define these for the host compiler; here device code is host code.
#undef __global__
#undef __device__
#undef __host__
#undef __shared__
#undef __forceinline__
#undef __launch_bounds__
#define __global__
#define __device__
#define __host__
#define __shared__ static
#define __forceinline__ inline
#define __launch_bounds__(...)

namespace emu {

struct Fiber {
  ucontext_t ctx;  // used once, to start the fiber on its own stack
  jmp_buf jb;      // where it resumes after giving way
  uint3 tid;
  int warp = 0, lane = 0;
  bool started = false, done = false;
  const uint64_t* wait_gen = nullptr;  // giving way until *wait_gen != wait_mine
  uint64_t wait_mine = 0;
};

struct Block {
  uint3 bid;
  dim3 grid, block;
  std::vector<Fiber> fibers;
  int live = 0;
  // block barrier: arrivals this generation, and the generation
  int arrived = 0;
  uint64_t gen = 0;
  // per warp: shuffle slots, and up to 32 barriers in progress at once, one per mask
  std::vector<uint64_t> slots;  // [warps * 32]
  struct WarpBarrier {
    unsigned mask = 0, arrived = 0;  // arrived == 0: free
    uint64_t gen = 0;
  };
  std::vector<WarpBarrier> warp_bars;  // [warps * 32]
  std::vector<unsigned char> dyn_smem;
  const std::function<void()>* body = nullptr;
  ucontext_t sched_uc;
  jmp_buf sched_jb;
};

inline Block*& cur_block() {
  static Block* b = nullptr;
  return b;
}
inline Fiber*& cur_fiber() {
  static Fiber* f = nullptr;
  return f;
}

[[noreturn]] inline void die(const char* what) {
  fprintf(stderr, "cuda_emu: %s\n", what);
  abort();
}

// Switches between fibers use _setjmp/_longjmp (no signal-mask system call, unlike
// swapcontext, which is only used to start each fiber on its stack).
inline void yield_until_changed(const uint64_t* gen, uint64_t mine) {
  Fiber* f = cur_fiber();
  while (*gen == mine) {
    f->wait_gen = gen;
    f->wait_mine = mine;
    if (!_setjmp(f->jb)) _longjmp(cur_block()->sched_jb, 1);
  }
  f->wait_gen = nullptr;
}

inline void syncthreads() {
  Block& b = *cur_block();
  const uint64_t mine = b.gen;
  if (++b.arrived == b.live) {
    b.arrived = 0;
    ++b.gen;
    return;
  }
  yield_until_changed(&b.gen, mine);
}

// All lanes of `mask` in the calling fiber's warp meet here; lanes of a disjoint mask meet at a
// barrier of their own.
inline void warp_barrier(unsigned mask) {
  Block& b = *cur_block();
  const Fiber& f = *cur_fiber();
  if (!((mask >> f.lane) & 1u)) die("a warp barrier (shuffle, vote or __syncwarp) from a lane outside its mask");
  Block::WarpBarrier* bars = &b.warp_bars[f.warp * 32];
  Block::WarpBarrier* bar = nullptr;
  for (int i = 0; i < 32 && !bar; ++i)
    if (bars[i].arrived && bars[i].mask == mask) bar = &bars[i];
    else if (bars[i].arrived && (bars[i].mask & mask)) die("lanes of a warp meet at barriers whose masks overlap but differ");
  for (int i = 0; i < 32 && !bar; ++i)
    if (!bars[i].arrived) bar = &bars[i];
  bar->mask = mask;
  bar->arrived |= 1u << f.lane;
  const uint64_t mine = bar->gen;
  if (bar->arrived == mask) {
    bar->arrived = 0;
    ++bar->gen;
    return;
  }
  yield_until_changed(&bar->gen, mine);
}

// The lanes of `mask` publish a predicate; each gets the bits of all of them (lane l: bit l).
inline unsigned ballot(unsigned mask, bool pred) {
  Fiber& f = *cur_fiber();
  Block& b = *cur_block();
  b.slots[f.warp * 32 + f.lane] = pred;
  warp_barrier(mask);
  unsigned bits = 0;
  for (int l = 0; l < 32; ++l)
    if (((mask >> l) & 1u) && b.slots[f.warp * 32 + l]) bits |= 1u << l;
  warp_barrier(mask);  // nobody overwrites a slot before every lane has read it
  return bits;
}

// Every lane of `mask` publishes v and reads the value of the lane its `partner` names (within
// its group of `width` lanes); a partner outside the group keeps its own v (CUDA's rule).
template <class T, class Partner>
T shfl(unsigned mask, T v, Partner partner_of) {
  static_assert(sizeof(T) <= 8, "shuffle of at most 8 bytes");
  Fiber& f = *cur_fiber();
  Block& b = *cur_block();
  if (!((mask >> f.lane) & 1u)) die("a warp shuffle from a lane outside its mask");
  uint64_t bits = 0;
  memcpy(&bits, &v, sizeof(T));
  b.slots[f.warp * 32 + f.lane] = bits;
  warp_barrier(mask);
  const int partner = partner_of(f.lane);
  if (!((mask >> partner) & 1u)) die("a warp shuffle reads a lane outside the mask");
  T out;
  memcpy(&out, &b.slots[f.warp * 32 + partner], sizeof(T));
  warp_barrier(mask);  // nobody overwrites a slot before every lane has read it
  return out;
}

template <class T>
T shfl_xor(unsigned mask, T v, int lane_mask, int width) {
  return shfl(mask, v, [&](int lane) { return (lane & ~(width - 1)) | ((lane ^ lane_mask) & (width - 1)); });
}

template <class T>
T shfl_up(unsigned mask, T v, unsigned delta, int width) {
  return shfl(mask, v, [&](int lane) {
    const int in_group = lane & (width - 1);
    return in_group >= (int)delta ? lane - (int)delta : lane;
  });
}

// A fiber runs the kernel once per block, for every block of the launch: started once, it
// waits after each run until the scheduler resumes it for the next block.
inline void fiber_entry() {
  for (;;) {
    Block& b = *cur_block();
    (*b.body)();
    Fiber& f = *cur_fiber();
    f.done = true;
    --b.live;
    // a barrier that waited only for this thread is now complete
    if (b.arrived > 0 && b.arrived == b.live) {
      b.arrived = 0;
      ++b.gen;
    }
    if (!_setjmp(f.jb)) _longjmp(b.sched_jb, 1);
  }
}

// Runs fiber f until it gives way or ends. Separate and not inlined: _setjmp returns twice.
__attribute__((noinline)) inline void resume(Block& b, Fiber& f) {
  cur_fiber() = &f;
  if (_setjmp(b.sched_jb)) return;
  if (!f.started) {
    f.started = true;
    swapcontext(&b.sched_uc, &f.ctx);
  } else {
    _longjmp(f.jb, 1);
  }
}

__attribute__((noinline)) inline void start_fiber(Block& b, Fiber& f, char* stack, size_t bytes) {
  getcontext(&f.ctx);
  f.ctx.uc_stack.ss_sp = stack;
  f.ctx.uc_stack.ss_size = bytes;
  f.ctx.uc_link = &b.sched_uc;  // unused: fiber_entry leaves by _longjmp
  makecontext(&f.ctx, fiber_entry, 0);
}

// Runs one block: every fiber in turn, skipping those whose barrier has not moved.
inline void run_block(Block& b, unsigned n) {
  for (Fiber& f : b.fibers) {
    f.done = false;
    f.wait_gen = nullptr;
  }
  b.live = (int)n;
  b.arrived = 0;
  while (b.live > 0) {
    bool ran = false;
    for (unsigned i = 0; i < n; ++i) {
      Fiber& f = b.fibers[i];
      if (f.done || (f.wait_gen && *f.wait_gen == f.wait_mine)) continue;
      resume(b, f);
      ran = true;
    }
    if (!ran) die("deadlock: live threads wait at barriers that cannot complete");
  }
}

// Runs body() as every thread of every block of the grid, one block at a time. The fibers are
// left suspended when it returns, and their stacks freed: nothing on them needs destroying.
inline void run_grid(dim3 grid, dim3 block, size_t dyn_smem, const std::function<void()>& body) {
  const unsigned n = block.x * block.y * block.z;
  if (n == 0 || n > 1024) die("a block of 0 or more than 1024 threads");
  if (block.x % 32 != 0 && block.y * block.z != 1) die("emulated warps assume blockDim.x % 32 == 0 or a 1-D block");
  static std::vector<std::vector<char>> stacks;  // kept between launches: no fresh pages each time
  while (stacks.size() < n) stacks.emplace_back(64 * 1024);
  Block b;
  b.grid = grid;
  b.block = block;
  b.body = &body;
  const int warps = (int)((n + 31) / 32);
  b.slots.assign(warps * 32, 0);
  b.dyn_smem.resize(dyn_smem + 16);
  b.fibers.assign(n, Fiber());
  b.warp_bars.assign(warps * 32, Block::WarpBarrier());
  for (unsigned i = 0; i < n; ++i) {
    Fiber& f = b.fibers[i];
    f.tid = make_uint3(i % block.x, i / block.x % block.y, i / (block.x * block.y));
    f.warp = (int)(i / 32);
    f.lane = (int)(i % 32);
    start_fiber(b, f, stacks[i].data(), stacks[i].size());
  }
  cur_block() = &b;
  for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by)
      for (unsigned bx = 0; bx < grid.x; ++bx) {
        b.bid = make_uint3(bx, by, bz);
        const float nan = NAN;
        for (size_t i = 0; i + 4 <= b.dyn_smem.size(); i += 4) memcpy(&b.dyn_smem[i], &nan, 4);
        run_block(b, n);
      }
  cur_block() = nullptr;
  cur_fiber() = nullptr;
}

// PF_LAUNCH(kernel, grid, block, smem, stream)(args...)
template <class K>
struct Launcher {
  dim3 grid, block;
  size_t smem;
  K kernel;
  template <class... A>
  void operator()(A... args) const {
    const std::function<void()> body = [&] { kernel(args...); };
    run_grid(grid, block, smem, body);
  }
};
template <class K>
Launcher<K> launcher(dim3 grid, dim3 block, size_t smem, K kernel) {
  return Launcher<K>{grid, block, smem, kernel};
}

template <class T>
T* dynamic_shared() {
  return reinterpret_cast<T*>(cur_block()->dyn_smem.data());
}

}  // namespace emu

// ---- the CUDA names kernels use ------------------------------------------------------------
#define threadIdx (::emu::cur_fiber()->tid)
#define blockIdx (::emu::cur_block()->bid)
#define blockDim (::emu::cur_block()->block)
#define gridDim (::emu::cur_block()->grid)
#define PF_LAUNCH(kernel, grid, block, smem, stream) ::emu::launcher(dim3(grid), dim3(block), (size_t)(smem), kernel)
#define PF_EXTERN_SHARED(type, name) type* name = ::emu::dynamic_shared<type>()

inline void __syncthreads() { ::emu::syncthreads(); }
inline void __syncwarp(unsigned mask = 0xffffffffu) { ::emu::warp_barrier(mask); }
inline int __any_sync(unsigned mask, int pred) { return ::emu::ballot(mask, pred != 0) != 0; }
template <class T>
inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
  return ::emu::shfl_xor(mask, v, lane_mask, width);
}
template <class T>
inline T __ldg(const T* p) {
  // a 16-byte load from an address that is not 16-byte aligned is a fault on the GPU
  if (sizeof(T) == 16 && reinterpret_cast<uintptr_t>(p) % 16 != 0) ::emu::die("misaligned 16-byte load");
  return *p;
}
template <class T>
inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  return ::emu::shfl_up(mask, v, delta, width);
}
// Atomics: one fiber runs at a time and none gives way inside these, so plain read-modify-write
// is atomic here.
template <class T>
inline T atomicAdd(T* p, T v) {
  const T old = *p;
  *p = old + v;
  return old;
}
inline unsigned long long atomicMin(unsigned long long* p, unsigned long long v) {
  const unsigned long long old = *p;
  if (v < old) *p = v;
  return old;
}
inline int min(int a, int b) { return a < b ? a : b; }

#endif
