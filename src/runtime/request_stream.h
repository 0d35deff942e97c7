// What the engine thread sends back for one request: typed events through a small queue that
// the thread serving the request waits on. The scheduler pushes; one consumer pops. No JSON:
// the server layer turns events into response bodies or server-sent events.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <vector>

#include "runtime/generator.h"
#include "runtime/sampler.h"

namespace frugal {

using SteadyClock = std::chrono::steady_clock;

struct RequestUsage {
  int64_t prompt_tokens = 0;      // every prompt once, however many choices it has
  int64_t cached_tokens = 0;      // of them, taken from the prefix cache instead of computed
  int64_t completion_tokens = 0;  // generated, every choice
};

// Why a request ended without its normal end.
enum class RequestError {
  kNone,
  kShuttingDown,  // the server stopped before the request finished
  kInternal,      // the engine failed (a bug, or the machine ran out of something)
};

struct StreamEvent {
  enum class Kind {
    kToken,   // one sampled token of a choice
    kFinish,  // a choice ended (every choice gets exactly one)
    kDone,    // the request is over: the last event, with the usage
    kError,   // the request failed: the last event
  };
  Kind kind = Kind::kToken;
  int32_t choice = 0;
  int32_t token = -1;  // kToken
  // kToken: the text that became final with this token (may be empty: part of a character, or
  // held back as a possible stop string). kFinish: what the stream still held. kError: message.
  std::string text;
  int64_t text_offset = 0;    // kToken: where the token's text starts in the choice's text (characters)
  bool has_logprobs = false;  // kToken, when the request asked for log-probabilities
  TokenLogprobs logprobs;
  FinishReason finish = FinishReason::kLength;  // kFinish
  std::string stop_string;                      // kFinish with FinishReason::kStop
  RequestUsage usage;                           // kDone
  RequestError error = RequestError::kNone;     // kError
  SteadyClock::time_point time;                 // when the engine produced it
};

class RequestStream {
 public:
  // Consumer: waits until events arrive (or `timeout` passes) and moves them all into `out`.
  // Returns false when it timed out with none.
  bool wait(std::vector<StreamEvent>& out, std::chrono::milliseconds timeout);
  // Asks the engine to stop the request; it frees the request's KV blocks at its next step.
  void cancel() { cancelled_.store(true, std::memory_order_relaxed); }
  bool cancelled() const { return cancelled_.load(std::memory_order_relaxed); }

  // Producer (the engine thread).
  void push(StreamEvent event);

 private:
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<StreamEvent> events_;
  std::atomic<bool> cancelled_{false};
};

}  // namespace frugal
