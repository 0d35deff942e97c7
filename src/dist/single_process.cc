// The one-rank Communicator.
#include <cstring>
#include <deque>
#include <vector>

#include "core/check.h"
#include "dist/communicator.h"

namespace frugal {
namespace {

class SingleProcessCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }

  void all_reduce_sum(float*, int64_t n) override { FRUGAL_CHECK(n >= 0); }

  void all_gather(const void* send, void* recv, size_t bytes) override {
    if (bytes > 0 && send != recv) std::memmove(recv, send, bytes);
  }

  void send(const void* data, size_t bytes, int peer) override {
    FRUGAL_CHECK(peer == 0, "rank {} does not exist in a one-rank group", peer);
    const auto* p = static_cast<const uint8_t*>(data);
    queue_.emplace_back(p, p + bytes);
  }

  void recv(void* data, size_t bytes, int peer) override {
    FRUGAL_CHECK(peer == 0, "rank {} does not exist in a one-rank group", peer);
    // A receive with nothing sent would wait forever on a real transport: a bug in the caller.
    FRUGAL_CHECK(!queue_.empty(), "recv without a matching send");
    FRUGAL_CHECK(queue_.front().size() == bytes, "recv of {} bytes matched a send of {}", bytes, queue_.front().size());
    if (bytes > 0) std::memcpy(data, queue_.front().data(), bytes);
    queue_.pop_front();
  }

  void barrier() override {}

 private:
  std::deque<std::vector<uint8_t>> queue_;
};

}  // namespace

std::unique_ptr<Communicator> make_single_process_communicator() { return std::make_unique<SingleProcessCommunicator>(); }

}  // namespace frugal
