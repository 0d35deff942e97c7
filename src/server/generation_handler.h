// POST /v1/chat/completions and /v1/completions: parse, build, submit to the scheduler, then
// either collect the events into one JSON response or stream them as server-sent events.
// While it waits the handler watches its connection, so a client that goes away cancels its
// request and the engine frees its KV blocks at the next step.
#pragma once

#include <atomic>
#include <functional>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "runtime/scheduler.h"
#include "server/api_error.h"
#include "server/metrics.h"
#include "server/openai_request.h"
#include "server/request_builder.h"

namespace httplib {
struct Request;
struct Response;
}  // namespace httplib

namespace frugal::server {

class GenerationHandler {
 public:
  // adapters: the names of the LoRA adapters a request may choose by "model", in the order of
  // their index (the first is GenerationRequest::adapter 1).
  GenerationHandler(Scheduler& scheduler, const RequestBuilder& builder, Metrics& metrics, std::string model_id,
                    std::vector<std::string> adapters, RequestLimits limits);

  void handle(Endpoint endpoint, const httplib::Request& req, httplib::Response& res);
  // From now on requests get 503.
  void begin_shutdown() { shutting_down_ = true; }
  bool shutting_down() const { return shutting_down_; }
  // Generation requests whose response is not completely written yet.
  int in_flight() const { return in_flight_.load(); }
  // Shuts the connections of those requests down (the end of a drain): a client that stopped
  // reading held its handler in a write for up to twice --timeout, and shutdown with it.
  void close_connections();
  // Bookkeeping of a request in flight (internal): counted from enter() to leave(), its
  // connection listed from watch() on.
  void enter();
  void watch(int fd);
  void leave(int fd);
  const std::string& model_id() const { return model_id_; }

 private:
  int retry_after_seconds() const;
  // The adapter index a request's "model" names (0: the base, or none given); throws ApiError
  // 404 model_not_found for another name.
  int32_t adapter_of(const std::string& model) const;

  Scheduler& scheduler_;
  const RequestBuilder& builder_;
  Metrics& metrics_;
  std::string model_id_;
  std::vector<std::string> adapters_;
  RequestLimits limits_;
  std::atomic<bool> shutting_down_{false};
  std::atomic<int> in_flight_{0};
  std::mutex fds_mutex_;
  std::multiset<int> fds_;  // connections of requests in flight (a descriptor stays open while listed)
};

// Writes an OpenAI-shaped error response (and its status).
void respond_error(httplib::Response& res, const ApiError& error);
// Sends `body` through a content provider and calls `after` once cpp-httplib is done with the
// response (written, or given up): what set_content cannot do, as its body is written after the
// handler returns, with nothing to say when.
void send_then(httplib::Response& res, std::string body, const std::string& content_type,
               std::function<void()> after);

}  // namespace frugal::server
