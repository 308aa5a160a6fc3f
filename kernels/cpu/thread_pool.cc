#include "thread_pool.h"

#include <stdlib.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

namespace pf {
namespace {

// Below this many bytes a job runs on the caller: waking a sleeping thread costs a few
// microseconds, about what 64 KiB of streaming work takes on one core.
constexpr int64_t kMinParallelBytes = 64 * 1024;

int default_threads() {
  if (const char* env = getenv("PERSONAFUSE_NUM_THREADS")) {
    const int n = atoi(env);
    if (n > 0) return n;
  }
  const unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : (int)hw;
}

class Pool {
 public:
  ~Pool() { resize(1); }

  int size() const { return size_.load(std::memory_order_relaxed); }

  void resize(int n) {
    std::lock_guard<std::mutex> lock(submit_);
    stop_workers();
    // A new worker must wait for the *next* job: started with a stale generation it would
    // run the previous job's (dangling) task function and unbalance active_.
    const uint64_t current = generation_;
    for (int i = 1; i < n; ++i) workers_.emplace_back([this, current] { worker_loop(current); });
    size_.store(n);
  }

  void run(int64_t ntasks, void (*fn)(void*, int64_t), void* ctx) {
    std::unique_lock<std::mutex> submit(submit_, std::try_to_lock);
    if (!submit.owns_lock() || workers_.empty()) {
      for (int64_t t = 0; t < ntasks; ++t) fn(ctx, t);
      return;
    }
    {
      std::lock_guard<std::mutex> lock(m_);
      fn_ = fn;
      ctx_ = ctx;
      ntasks_ = ntasks;
      next_.store(0);
      active_ = (int)workers_.size();
      ++generation_;
    }
    cv_.notify_all();
    drain();
    std::unique_lock<std::mutex> lock(m_);
    done_cv_.wait(lock, [this] { return active_ == 0; });
  }

 private:
  void drain() {
    for (int64_t t; (t = next_.fetch_add(1)) < ntasks_;) fn_(ctx_, t);
  }

  void worker_loop(uint64_t seen) {
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(m_);
        cv_.wait(lock, [&] { return quit_ || generation_ != seen; });
        if (quit_) return;
        seen = generation_;
      }
      drain();
      std::lock_guard<std::mutex> lock(m_);
      if (--active_ == 0) done_cv_.notify_one();
    }
  }

  void stop_workers() {
    {
      std::lock_guard<std::mutex> lock(m_);
      quit_ = true;
    }
    cv_.notify_all();
    for (auto& w : workers_) w.join();
    workers_.clear();
    quit_ = false;
  }

  std::mutex submit_;  // one job at a time; other callers run inline
  std::mutex m_;
  std::condition_variable cv_, done_cv_;
  std::vector<std::thread> workers_;
  void (*fn_)(void*, int64_t) = nullptr;
  void* ctx_ = nullptr;
  int64_t ntasks_ = 0;
  std::atomic<int64_t> next_{0};
  int active_ = 0;
  uint64_t generation_ = 0;
  bool quit_ = false;
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
