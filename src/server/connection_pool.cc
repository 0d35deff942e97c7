#include "server/connection_pool.h"

#include <system_error>

#include "core/log.h"

namespace frugal::server {

ConnectionPool::~ConnectionPool() {
  shutdown();
}

void ConnectionPool::enqueue(std::function<void()> task) {
  {
    std::lock_guard lock(mutex_);
    tasks_.push_back(std::move(task));
    // Idle threads that were notified may not have taken their task yet: a new thread is
    // needed when the tasks outnumber them.
    if (!shutdown_ && tasks_.size() > idle_ && threads_.size() < max_threads_) {
      try {
        threads_.emplace_back([this] { work(); });
      } catch (const std::system_error& e) {
        // The connection waits for a running thread. Said at most once a minute, with a count.
        ++refused_since_warning_;
        const auto now = std::chrono::steady_clock::now();
        if (now - last_warning_ >= std::chrono::minutes(1)) {
          log_warn("cannot start another HTTP thread ({} running; {} refused since the last warning): {}; "
                   "connections wait for a free thread",
                   threads_.size(), refused_since_warning_, e.what());
          refused_since_warning_ = 0;
          last_warning_ = now;
        }
      }
    }
  }
  ready_.notify_one();
}

void ConnectionPool::work() {
  for (;;) {
    std::function<void()> task;
    {
      std::unique_lock lock(mutex_);
      ++idle_;
      ready_.wait(lock, [this] { return !tasks_.empty() || shutdown_; });
      --idle_;
      if (tasks_.empty()) return;  // shutting down
      task = std::move(tasks_.front());
      tasks_.pop_front();
    }
    task();
  }
}

void ConnectionPool::shutdown() {
  std::vector<std::thread> threads;
  {
    std::lock_guard lock(mutex_);
    shutdown_ = true;
    threads.swap(threads_);
  }
  ready_.notify_all();
  for (std::thread& t : threads) t.join();
}

size_t ConnectionPool::threads() const {
  std::lock_guard lock(mutex_);
  return threads_.size();
}

}  // namespace frugal::server
