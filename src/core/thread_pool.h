// A persistent fork-join thread pool for the compute path.
//
// Decode runs a few hundred parallel regions per token, each a few microseconds long, so a
// region must start and end in well under a microsecond: waiting threads spin briefly, then
// yield, then sleep on a futex (see thread_pool.cc), and the caller takes part as thread 0.
//
// Participation is opportunistic: a worker joins a region only while it is open, and the
// caller closes it as soon as its own loop runs out of work, then waits only for workers
// already inside. A worker the OS has descheduled (a shared machine; CI running two tests on
// two cores) therefore never stalls a region: the running threads do its share. The price is
// a rule for every region: work is taken from a shared counter, never assigned by thread index.
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

  // Calls f(thread_index) on the caller (index 0) and on every worker that joins while the
  // region is open; returns when the caller's call and every joined call have returned. f must
  // take its work from a shared queue (an atomic counter): which threads run is not known.
  // Thread indices are unique among concurrent calls, so they may index per-thread scratch.
  // Regions do not nest.
  template <typename F>
  void run(F&& f) {
    if (n_threads_ == 1) {
      f(0);
      return;
    }
    run_impl([](void* ctx, int i) { (*static_cast<F*>(ctx))(i); }, &f);
  }

  // Calls f(begin, end) over [0, n) in chunks (boundaries multiples of `align`), a few chunks
  // per thread, handed out dynamically.
  template <typename F>
  void parallel_for(int64_t n, F&& f, int64_t align = 1) {
    const int64_t units = (n + align - 1) / align;
    if (n_threads_ == 1 || units <= 1) {
      if (n > 0) f(int64_t{0}, n);
      return;
    }
    const int64_t chunks = std::min<int64_t>(units, 4 * n_threads_);
    std::atomic<int64_t> next{0};
    run([&](int) {
      for (int64_t c = next.fetch_add(1, std::memory_order_relaxed); c < chunks; c = next.fetch_add(1, std::memory_order_relaxed)) {
        const int64_t begin = std::min(n, units * c / chunks * align);
        const int64_t end = std::min(n, units * (c + 1) / chunks * align);
        if (begin < end) f(begin, end);
      }
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
  alignas(64) std::atomic<uint32_t> generation_{0};  // bumped by every region; workers wait on it
  alignas(64) std::atomic<uint32_t> open_{0};        // generation of the open region, 0 when closed
  alignas(64) std::atomic<int> active_{0};           // workers inside the current region
  alignas(64) std::atomic<int> sleeping_{0};         // workers asleep on generation_
  std::atomic<bool> caller_sleeping_{false};         // the caller asleep on active_
  std::atomic<bool> stop_{false};
};

}  // namespace frugal
