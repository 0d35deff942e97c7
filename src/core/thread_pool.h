// A persistent fork-join thread pool for the compute path.
//
// Decode runs a few hundred parallel regions per token, each a few microseconds long, so a
// region must start and end in well under a microsecond: waiting threads spin briefly, then
// yield, then sleep on a futex (see thread_pool.cc), and the caller takes part as thread 0.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

namespace frugal {

class ThreadPool {
 public:
  // n_threads counts the calling thread. 1 means everything runs on the caller.
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // Runs f(thread_index) on every thread (the caller is index 0) and waits for all of them.
  // Regions do not nest: f must not call run() on this pool.
  template <typename F>
  void run(F&& f) {
    if (n_threads_ == 1) {
      f(0);
      return;
    }
    run_impl([](void* ctx, int i) { (*static_cast<F*>(ctx))(i); }, &f);
  }

  // Splits [0, n) into one contiguous chunk per thread, chunk boundaries multiples of `align`,
  // and calls f(begin, end) for each non-empty chunk.
  template <typename F>
  void parallel_for(int64_t n, F&& f, int64_t align = 1) {
    const int64_t units = (n + align - 1) / align;
    const int threads = static_cast<int>(std::min<int64_t>(n_threads_, units));
    if (threads <= 1) {
      if (n > 0) f(int64_t{0}, n);
      return;
    }
    run([&](int t) {
      if (t >= threads) return;
      const int64_t begin = std::min(n, units * t / threads * align);
      const int64_t end = std::min(n, units * (t + 1) / threads * align);
      if (begin < end) f(begin, end);
    });
  }

  // Physical cores available to this process (the default thread count).
  static int default_threads();

 private:
  using Task = void (*)(void*, int);
  void run_impl(Task task, void* ctx);
  void worker_loop(int index);

  int n_threads_;
  std::vector<std::thread> workers_;
  Task task_ = nullptr;
  void* ctx_ = nullptr;
  alignas(64) std::atomic<uint32_t> generation_{0};
  alignas(64) std::atomic<int> pending_{0};
  alignas(64) std::atomic<int> sleeping_{0};
  std::atomic<bool> caller_sleeping_{false};
  std::atomic<bool> stop_{false};
};

}  // namespace frugal
