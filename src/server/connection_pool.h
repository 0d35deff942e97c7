// The threads that serve HTTP connections: cpp-httplib hands each accepted connection to a
// task queue, and the task keeps its thread for the connection's whole keep-alive life.
//
// cpp-httplib's own ThreadPool has a fixed number of threads: connections beyond it waited in
// an unbounded list, unanswered, until some other client left (110 idle keep-alive clients on
// the default 100 threads: 10 waited > 5 s; browsers keep 6 connections each). This pool starts
// a thread whenever a connection would otherwise wait, up to `max_threads`, and keeps the
// threads it started (idle ones cost a stack of address space) until shutdown.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include <httplib.h>

namespace frugal::server {

class ConnectionPool : public httplib::TaskQueue {
 public:
  explicit ConnectionPool(size_t max_threads) : max_threads_(max_threads) {}
  ~ConnectionPool() override;

  // A connection to serve: on an idle thread, or a new one while there are fewer than
  // max_threads (the system refusing a thread leaves the connection to the next free one).
  void enqueue(std::function<void()> task) override;
  // Serves what was queued, then joins every thread.
  void shutdown() override;

  size_t threads() const;

 private:
  void work();

  const size_t max_threads_;
  mutable std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<std::function<void()>> tasks_;
  std::vector<std::thread> threads_;
  size_t idle_ = 0;
  // Threads the system refused since the last warning, and when that was: a burst of
  // connections at the system's thread limit logged one line per connection (247 for 300).
  size_t refused_since_warning_ = 0;
  std::chrono::steady_clock::time_point last_warning_{};
  bool shutdown_ = false;
};

}  // namespace frugal::server
