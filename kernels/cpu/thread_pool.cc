#include "thread_pool.h"

#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#include <immintrin.h>
#define PF_CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define PF_CPU_RELAX() __asm__ __volatile__("yield")
#else
#define PF_CPU_RELAX() ((void)0)
#endif

namespace pf {
namespace {

// Below this many bytes a job runs on the caller. Waking a sleeping worker costs 8-25 µs on
// the VMs we measured (futex + IPI to a halted vCPU), and the worker joins only after that:
// a job must take ~2 wake-ups on one core before a second core can pay for itself. One core
// streams ~30 GB/s from L2, so that is ~1 MiB of work (bench/results/journal-bench.md, "Thread pool").
constexpr int64_t kMinParallelBytes = 1024 * 1024;

// A worker that found no more tasks spins this long for the next job before it sleeps: the
// ops issue their parallel regions back to back (lora_moe's shrink, then its expand), and a
// spinning worker joins the next one in ~0.1 µs instead of a wake-up. Kept short so that a
// finished call does not hold a core others could use.
constexpr auto kSpin = std::chrono::microseconds(4);

int default_threads() {
  if (const char* env = getenv("PERSONAFUSE_NUM_THREADS")) {
    const int n = atoi(env);
    if (n > 0) return n;
  }
  const unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : (int)hw;
}

// Job hand-off without waiting for late workers.
//   ticket_ = (generation << 32) | next task index, one atomic word.
//   A worker claims task i of generation G by a CAS of (G, i) -> (G, i + 1); the job's
//   description lives in slot_[G & 1] and is rewritten only for generation G + 2, which cannot
//   start before every task of G (the claimed ones included) has finished. A worker that
//   wakes late reads a newer generation (or a full index) and simply goes back to waiting, so
//   the caller waits for the *tasks* to finish, never for a worker to show up: when the other
//   core is busy the caller just runs every task itself.
struct Job {
  std::atomic<void (*)(void*, int64_t)> fn{nullptr};
  std::atomic<void*> ctx{nullptr};
  std::atomic<int64_t> ntasks{0};
  std::atomic<int64_t> done{0};
};

class Pool {
 public:
  ~Pool() { resize(1); }

  int size() const { return size_.load(std::memory_order_relaxed); }

  void resize(int n) {
    std::lock_guard<std::mutex> lock(submit_);
    stop_workers();
    for (int i = 1; i < n; ++i) workers_.emplace_back([this] { worker_loop(); });
    size_.store(n);
  }

  void run(int64_t ntasks, void (*fn)(void*, int64_t), void* ctx) {
    std::unique_lock<std::mutex> submit(submit_, std::try_to_lock);
    if (!submit.owns_lock() || workers_.empty() || ntasks >= (int64_t(1) << 32)) {
      for (int64_t t = 0; t < ntasks; ++t) fn(ctx, t);
      return;
    }
    const uint64_t gen = (ticket_.load(std::memory_order_relaxed) >> 32) + 1;
    Job& job = slot_[gen & 1];
    job.fn.store(fn, std::memory_order_relaxed);
    job.ctx.store(ctx, std::memory_order_relaxed);
    job.ntasks.store(ntasks, std::memory_order_relaxed);
    job.done.store(0, std::memory_order_relaxed);
    ticket_.store(gen << 32, std::memory_order_seq_cst);  // then read sleepers_ (Dekker)
    if (sleepers_.load(std::memory_order_seq_cst) > 0) {
      std::lock_guard<std::mutex> lock(m_);  // orders the store against a worker's wait check
      cv_.notify_all();
    }
    work(gen);
    // The last tasks run on the workers; yield now and then in case one was descheduled.
    for (int n = 1; job.done.load(std::memory_order_acquire) < ntasks; ++n) {
      PF_CPU_RELAX();
      if ((n & 4095) == 0) std::this_thread::yield();
    }
  }

 private:
  // Claims and runs tasks of generation gen until none is left (or a newer job started).
  void work(uint64_t gen) {
    Job& job = slot_[gen & 1];
    uint64_t v = ticket_.load(std::memory_order_acquire);
    for (;;) {
      if ((v >> 32) != gen) return;
      const int64_t i = (int64_t)(v & 0xffffffffu);
      if (i >= job.ntasks.load(std::memory_order_relaxed)) return;
      if (!ticket_.compare_exchange_weak(v, v + 1, std::memory_order_acq_rel)) continue;
      job.fn.load(std::memory_order_relaxed)(job.ctx.load(std::memory_order_relaxed), i);
      job.done.fetch_add(1, std::memory_order_release);
      v = ticket_.load(std::memory_order_acquire);
    }
  }

  void worker_loop() {
    uint64_t seen = ticket_.load(std::memory_order_acquire) >> 32;
    for (;;) {
      uint64_t gen = wait_for_job(seen);
      if (gen == 0) return;
      work(gen);
      seen = gen;
    }
  }

  // The generation of a job newer than seen, or 0 when the pool stops.
  uint64_t wait_for_job(uint64_t seen) {
    const auto until = std::chrono::steady_clock::now() + kSpin;
    for (int n = 0;; ++n) {
      if (quit_.load(std::memory_order_acquire)) return 0;
      const uint64_t gen = ticket_.load(std::memory_order_acquire) >> 32;
      if (gen != seen) return gen;
      if ((n & 63) == 63 && std::chrono::steady_clock::now() > until) break;
      PF_CPU_RELAX();
    }
    std::unique_lock<std::mutex> lock(m_);
    sleepers_.fetch_add(1, std::memory_order_seq_cst);
    uint64_t gen = 0;
    cv_.wait(lock, [&] {
      gen = ticket_.load(std::memory_order_seq_cst) >> 32;
      return quit_.load(std::memory_order_acquire) || gen != seen;
    });
    sleepers_.fetch_sub(1, std::memory_order_relaxed);
    return quit_.load(std::memory_order_acquire) ? 0 : gen;
  }

  void stop_workers() {
    {
      std::lock_guard<std::mutex> lock(m_);
      quit_.store(true);
    }
    cv_.notify_all();
    for (auto& w : workers_) w.join();
    workers_.clear();
    quit_.store(false);
  }

  std::mutex submit_;  // one job at a time; other callers run inline
  std::mutex m_;       // only for sleeping and waking workers
  std::condition_variable cv_;
  std::vector<std::thread> workers_;
  std::atomic<uint64_t> ticket_{0};
  Job slot_[2];
  std::atomic<int> sleepers_{0};
  std::atomic<bool> quit_{false};
  std::atomic<int> size_{1};
};

Pool& pool() {
  static Pool* p = [] {
    Pool* created = new Pool();  // never destroyed: workers may outlive static destructors
    created->resize(default_threads());
    return created;
  }();
  return *p;
}

}  // namespace

void parallel_for(int64_t ntasks, int64_t work_bytes, void (*fn)(void*, int64_t), void* ctx) {
  if (ntasks <= 0) return;
  if (ntasks == 1 || work_bytes < kMinParallelBytes || pool().size() == 1) {
    for (int64_t t = 0; t < ntasks; ++t) fn(ctx, t);
    return;
  }
  pool().run(ntasks, fn, ctx);
}

int num_threads() { return pool().size(); }

void set_num_threads(int n) { pool().resize(n > 0 ? n : default_threads()); }

}  // namespace pf
