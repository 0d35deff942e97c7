#include "core/thread_pool.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>

#include <fstream>
#include <set>
#include <string>
#include <system_error>
#include <utility>

#include "core/check.h"
#include "core/log.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define FRUGAL_PAUSE() _mm_pause()
#else
#define FRUGAL_PAUSE() ((void)0)
#endif

namespace frugal {
namespace {

// Waiting is staged. First a short busy spin (a region usually starts or ends within
// microseconds of the previous one), then yielding the core (on an oversubscribed machine the
// thread we wait for may need it), then sleeping on a futex (an idle server uses no CPU).
constexpr int kSpinIterations = 1 << 11;   // a few microseconds of pause
constexpr int kYieldIterations = 1 << 9;   // roughly a millisecond of yields when the core is free

// Returns false once the caller should stop spinning and sleep.
inline bool backoff(int& round) {
  ++round;
  if (round < kSpinIterations) {
    FRUGAL_PAUSE();
    return true;
  }
  if (round < kSpinIterations + kYieldIterations) {
    sched_yield();
    return true;
  }
  return false;
}

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
  if (n_threads_ > kMaxThreads)
    fail("{} threads asked for (-t); at most {} (this machine has {} hardware threads)", n_threads_, kMaxThreads,
         std::thread::hardware_concurrency());
  // Waiting threads spin: more of them than CPUs take turns on them, and a step waits for the
  // slowest (-t 1000 on 2 CPUs decoded at 21 tokens/s against 550 with -t 1).
  const size_t cpus = allowed_cpus().size();
  if (cpus > 0 && static_cast<size_t>(n_threads_) > cpus)
    log_warn("{} threads on {} CPUs: threads beyond the CPUs make every step slower (-t 0: one per physical core)",
             n_threads_, cpus);
  workers_.reserve(n_threads_ - 1);
  try {
    for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
  } catch (const std::system_error& e) {
    // The system's thread limit: the workers already started must be joined before the
    // constructor gives up, or their std::thread destructors would end the process.
    const size_t started = workers_.size();
    stop_workers();
    fail("cannot start {} threads (started {}): {}", n_threads_, started + 1, e.what());
  }
}

ThreadPool::~ThreadPool() { stop_workers(); }

void ThreadPool::check_threads_flag(int threads) {
  if (threads < 0 || threads > kMaxThreads)
    fail("--threads must be 0 (one per physical core) to {} (got {})", kMaxThreads, threads);
}

void ThreadPool::stop_workers() {
  stop_.store(true, std::memory_order_relaxed);
  region_.generation.fetch_add(1, std::memory_order_release);
  region_.generation.notify_all();
  for (auto& w : workers_) w.join();
  workers_.clear();
}

void ThreadPool::run_impl(Task task, void* ctx, int64_t n_items) {
  Region& r = region_;
  r.task = task;
  r.ctx = ctx;
  r.next.store(0, std::memory_order_relaxed);
  r.n_items = n_items;
  uint32_t gen = r.generation.load(std::memory_order_relaxed) + 1;
  if (gen == 0) gen = 1;  // 0 means "closed"
  r.open.store(gen, std::memory_order_seq_cst);
  r.generation.store(gen, std::memory_order_seq_cst);  // pairs with the worker's seq_cst re-check
  if (sleeping_.load(std::memory_order_seq_cst) > 0) r.generation.notify_all();
  task(ctx, 0);
  // The caller ran out of work: close the region, then wait for the workers inside it. A
  // worker that increments `active` after this store sees the region closed and leaves.
  r.open.store(0, std::memory_order_seq_cst);
  int round = 0;
  for (int inside = r.active.load(std::memory_order_seq_cst); inside != 0; inside = r.active.load(std::memory_order_seq_cst)) {
    if (!backoff(round)) {
      caller_sleeping_.store(true, std::memory_order_seq_cst);
      inside = r.active.load(std::memory_order_seq_cst);
      if (inside != 0) r.active.wait(inside, std::memory_order_seq_cst);
      caller_sleeping_.store(false, std::memory_order_relaxed);
    }
  }
}

void ThreadPool::worker_loop(int index) {
  // SIGINT and SIGTERM go to other threads: a handler run on a worker could not be held off by
  // the main thread blocking them around a step that must not be cut in two (the renames that
  // put an AtomicOutputFolder in place).
  sigset_t termination;
  sigemptyset(&termination);
  sigaddset(&termination, SIGINT);
  sigaddset(&termination, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &termination, nullptr);
  Region& r = region_;
  uint32_t seen = 0;
  for (;;) {
    uint32_t gen = r.generation.load(std::memory_order_acquire);
    for (int round = 0; gen == seen; gen = r.generation.load(std::memory_order_acquire)) {
      if (backoff(round)) continue;
      sleeping_.fetch_add(1, std::memory_order_seq_cst);
      // Re-check after announcing ourselves, so a notify between the load and the wait is not lost.
      if (r.generation.load(std::memory_order_seq_cst) == seen) r.generation.wait(seen, std::memory_order_acquire);
      sleeping_.fetch_sub(1, std::memory_order_relaxed);
      round = 0;
    }
    seen = gen;
    if (stop_.load(std::memory_order_relaxed)) return;
    // Join only if the region is still open; the caller may have finished it alone.
    r.active.fetch_add(1, std::memory_order_seq_cst);
    if (r.open.load(std::memory_order_seq_cst) == gen) r.task(r.ctx, index);
    if (r.active.fetch_sub(1, std::memory_order_seq_cst) == 1 && caller_sleeping_.load(std::memory_order_seq_cst))
      r.active.notify_one();
  }
}

}  // namespace frugal
