#include "core/thread_pool.h"

#include <pthread.h>
#include <sched.h>

#include <fstream>
#include <set>
#include <string>
#include <utility>

#include "core/check.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define FRUGAL_PAUSE() _mm_pause()
#else
#define FRUGAL_PAUSE() ((void)0)
#endif

namespace frugal {
namespace {

// About a millisecond of spinning before a worker sleeps: long enough to bridge the gaps
// between the regions of one forward pass, short enough that an idle server sleeps.
constexpr int kSpinIterations = 1 << 15;

std::vector<int> allowed_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<int> cpus;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    for (int c = 0; c < CPU_SETSIZE; ++c)
      if (CPU_ISSET(c, &set)) cpus.push_back(c);
  }
  return cpus;
}

int read_int(const std::string& path, int fallback) {
  std::ifstream in(path);
  int v = fallback;
  if (!(in >> v)) return fallback;
  return v;
}

}  // namespace

int ThreadPool::default_threads() {
  std::set<std::pair<int, int>> cores;  // (package, core) pairs: SMT siblings count once
  for (int cpu : allowed_cpus()) {
    const std::string base = "/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/topology/";
    cores.emplace(read_int(base + "physical_package_id", 0), read_int(base + "core_id", cpu));
  }
  if (!cores.empty()) return static_cast<int>(cores.size());
  return std::max(1u, std::thread::hardware_concurrency());
}

ThreadPool::ThreadPool(int n_threads) : n_threads_(std::max(1, n_threads)) {
  workers_.reserve(n_threads_ - 1);
  for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  stop_.store(true, std::memory_order_relaxed);
  generation_.fetch_add(1, std::memory_order_release);
  generation_.notify_all();
  for (auto& w : workers_) w.join();
}

void ThreadPool::run_impl(Task task, void* ctx) {
  task_ = task;
  ctx_ = ctx;
  pending_.store(n_threads_ - 1, std::memory_order_relaxed);
  generation_.fetch_add(1, std::memory_order_seq_cst);  // pairs with the worker's seq_cst re-check
  if (sleeping_.load(std::memory_order_seq_cst) > 0) generation_.notify_all();
  task(ctx, 0);
  while (pending_.load(std::memory_order_acquire) != 0) FRUGAL_PAUSE();
}

void ThreadPool::worker_loop(int index) {
  uint32_t seen = 0;
  for (;;) {
    uint32_t gen = generation_.load(std::memory_order_acquire);
    for (int spin = 0; gen == seen; ++spin) {
      if (spin < kSpinIterations) {
        FRUGAL_PAUSE();
      } else {
        sleeping_.fetch_add(1, std::memory_order_seq_cst);
        // Re-check after announcing ourselves, so a notify between the load and the wait is not lost.
        if (generation_.load(std::memory_order_seq_cst) == seen) generation_.wait(seen, std::memory_order_acquire);
        sleeping_.fetch_sub(1, std::memory_order_relaxed);
        spin = 0;
      }
      gen = generation_.load(std::memory_order_acquire);
    }
    seen = gen;
    if (stop_.load(std::memory_order_relaxed)) return;
    task_(ctx_, index);
    pending_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

}  // namespace frugal
