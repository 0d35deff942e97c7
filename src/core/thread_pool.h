// A persistent fork-join thread pool for the compute path.
//
// Decode runs a few hundred parallel regions per token, each a few microseconds long, so a
// region must start and end in well under a microsecond: waiting threads spin briefly, then
// yield, then sleep on a futex (see thread_pool.cc), and the caller takes part as thread 0.
//
// Everything a worker reads to join a region, and the item counter it takes work from, share
// one cache line (Region): a line moves between cores in ~200 ns on our machines, and while a
// worker fetched four separate lines one after another (generation, open flag, task, the
// caller's counter), a region of two items took 1.3 us longer than one item; now 0.6 us. A
// SmolLM2 decode step has 151 regions.
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
#include <utility>
#include <vector>

namespace frugal {

class ThreadPool {
 public:
  // More than this is a mistyped flag, not a machine: thousands of threads only thrash.
  static constexpr int kMaxThreads = 1024;
  // The check of every command's -t/--threads value (0: one per physical core, up to
  // kMaxThreads); throws frugal::Error naming the flag.
  static void check_threads_flag(int threads);

  // n_threads counts the calling thread. 1 means everything runs on the caller. Throws
  // frugal::Error above kMaxThreads or when the system cannot start that many.
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
    run_impl([](void* ctx, int i) { (*static_cast<F*>(ctx))(i); }, &f, 0);
  }

  // Calls f(item, thread_index) once for every item in [0, n), items handed out in order from
  // the pool's own counter (in the region's cache line) to whichever threads join.
  template <typename F>
  void run_items(int64_t n, F&& f) {
    if (n_threads_ == 1 || n <= 1) {
      for (int64_t i = 0; i < n; ++i) f(i, 0);
      return;
    }
    std::pair<ThreadPool*, F*> ctx{this, &f};
    run_impl(
        [](void* c, int t) {
          auto& [pool, fn] = *static_cast<std::pair<ThreadPool*, F*>*>(c);
          for (int64_t i = pool->next_item(); i >= 0; i = pool->next_item()) (*fn)(i, t);
        },
        &ctx, n);
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
    run_items(chunks, [&](int64_t c, int) {
      const int64_t begin = std::min(n, units * c / chunks * align);
      const int64_t end = std::min(n, units * (c + 1) / chunks * align);
      if (begin < end) f(begin, end);
    });
  }

  // Physical cores available to this process (the default thread count).
  static int default_threads();

 private:
  using Task = void (*)(void*, int);
  void run_impl(Task task, void* ctx, int64_t n_items);
  void worker_loop(int index);
  void stop_workers();  // wakes every worker to leave, and joins them
  // The next item of the open run_items region, -1 when none is left.
  int64_t next_item() {
    const int64_t i = region_.next.fetch_add(1, std::memory_order_relaxed);
    return i < region_.n_items ? i : -1;
  }

  int n_threads_;
  std::vector<std::thread> workers_;
  // One cache line: what a joining worker reads, and the counters the threads update.
  struct alignas(64) Region {
    std::atomic<uint32_t> generation{0};  // bumped by every region; workers wait on it
    std::atomic<uint32_t> open{0};        // generation of the open region, 0 when closed
    std::atomic<int> active{0};           // workers inside the current region
    Task task = nullptr;
    void* ctx = nullptr;
    std::atomic<int64_t> next{0};         // run_items: the next item to hand out
    int64_t n_items = 0;
  };
  static_assert(sizeof(Region) == 64);
  Region region_;
  alignas(64) std::atomic<int> sleeping_{0};  // workers asleep on region_.generation
  std::atomic<bool> caller_sleeping_{false};  // the caller asleep on region_.active
  std::atomic<bool> stop_{false};
};

}  // namespace frugal
