// The server's metrics in Prometheus' text exposition format (GET /metrics): requests by
// endpoint and outcome, tokens, latency histograms (time to first token, inter-token latency,
// request duration), and the scheduler's gauges (queue, running sequences, KV blocks, prefix
// cache). HTTP threads record into it concurrently; each metric has its own small lock.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "runtime/request_stream.h"
#include "runtime/scheduler.h"

namespace frugal::server {

// The endpoint label of a request to `path`: "chat" for /v1/chat/completions and
// /chat/completions, "completions" for /v1/completions and /completions, "other" for any other
// path. Every count_request goes through it: the API-key check labelled by "path contains chat"
// and counted a 401 on /v1/completions as "other", the 413 handler always did.
std::string endpoint_label(const std::string& path);

class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);
  void observe(double value);
  double mean() const;  // 0 before the first observation
  // Appends the _bucket, _sum and _count lines.
  void render(std::string& out, const std::string& name, const std::string& help) const;

 private:
  mutable std::mutex mutex_;
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bucket, not cumulative; the last is +Inf
  double sum_ = 0;
  uint64_t count_ = 0;
};

class Metrics {
 public:
  Metrics();

  // endpoint: endpoint_label's. outcome: success, cancelled, invalid, unauthorized, not_found,
  // too_large, rejected (queue full or shutting down), aborted (ended by a shutdown), error; a
  // request to another path is counted only when refused (unauthorized, too_large).
  void count_request(const std::string& endpoint, const std::string& outcome);
  void add_usage(const RequestUsage& usage);
  // Requests by the model they ran with (serve's --lora-module adapters, or the base): listed
  // at zero by add_models, only on a server with adapters; count_model counts an accepted one.
  void add_models(const std::vector<std::string>& names);
  void count_model(const std::string& name);

  Histogram time_to_first_token;  // seconds from the request's arrival to its first token
  Histogram inter_token_latency;  // seconds between consecutive tokens of a choice
  Histogram request_duration;     // seconds from arrival to the last event

  std::string render(const SchedulerStats& stats) const;

 private:
  mutable std::mutex mutex_;
  std::map<std::pair<std::string, std::string>, uint64_t> requests_;
  std::map<std::string, uint64_t> models_;
  uint64_t prompt_tokens_ = 0;
  uint64_t cached_prompt_tokens_ = 0;
  uint64_t completion_tokens_ = 0;
};

}  // namespace frugal::server
