// A small persistent thread pool. Work is split into tasks whose results never depend on
// which thread runs them, so the thread count changes speed only, never the numbers.
#ifndef PF_CPU_THREAD_POOL_H
#define PF_CPU_THREAD_POOL_H

#include <stdint.h>

namespace pf {

// Runs fn(ctx, task) for every task in [0, ntasks). Runs inline on the calling thread when
// there is one task, one thread, the estimated work is tiny, or the pool is busy with
// another caller's job (Node may call from several libuv workers at once).
//   work_bytes: bytes the whole job touches, so tiny jobs skip the wake-up cost.
void parallel_for(int64_t ntasks, int64_t work_bytes, void (*fn)(void* ctx, int64_t task),
                  void* ctx);

template <class F>
void parallel_for(int64_t ntasks, int64_t work_bytes, F&& f) {
  parallel_for(
      ntasks, work_bytes, [](void* c, int64_t t) { (*static_cast<F*>(c))(t); },
      static_cast<void*>(&f));
}

int num_threads();
void set_num_threads(int n);

}  // namespace pf
#endif
