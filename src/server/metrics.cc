#include "server/metrics.h"

#include <fmt/format.h>

#include <algorithm>

namespace frugal::server {
namespace {

void header(std::string& out, const std::string& name, const char* type, const std::string& help) {
  out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
}

// One unlabelled sample of an integer metric: its HELP and TYPE lines, then its value.
template <typename Int>
void sample(std::string& out, const char* type, const std::string& name, Int value, const std::string& help) {
  header(out, name, type, help);
  out += fmt::format("{} {}\n", name, value);
}

void gauge(std::string& out, const std::string& name, int64_t value, const std::string& help) {
  sample(out, "gauge", name, value, help);
}

// Counters only grow from zero: any integer type renders them.
template <typename Int>
void counter(std::string& out, const std::string& name, Int value, const std::string& help) {
  sample(out, "counter", name, value, help);
}

// Prometheus renders floats in Go's way; "+Inf" and a plain shortest representation suffice.
std::string number(double v) {
  return fmt::format("{}", v);
}

}  // namespace

std::string endpoint_label(const std::string& path) {
  if (path == "/v1/chat/completions" || path == "/chat/completions") return "chat";
  if (path == "/v1/completions" || path == "/completions") return "completions";
  return "other";
}

Histogram::Histogram(std::vector<double> upper_bounds)
    : bounds_(std::move(upper_bounds)), counts_(bounds_.size() + 1, 0) {
  std::sort(bounds_.begin(), bounds_.end());
}

void Histogram::observe(double value) {
  const size_t bucket = static_cast<size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin());
  std::lock_guard lock(mutex_);
  ++counts_[bucket];
  sum_ += value;
  ++count_;
}

double Histogram::mean() const {
  std::lock_guard lock(mutex_);
  return count_ > 0 ? sum_ / static_cast<double>(count_) : 0.0;
}

void Histogram::render(std::string& out, const std::string& name, const std::string& help) const {
  std::lock_guard lock(mutex_);
  header(out, name, "histogram", help);
  uint64_t cumulative = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cumulative += counts_[i];
    out += fmt::format("{}_bucket{{le=\"{}\"}} {}\n", name, number(bounds_[i]), cumulative);
  }
  cumulative += counts_.back();
  out += fmt::format("{}_bucket{{le=\"+Inf\"}} {}\n", name, cumulative);
  out += fmt::format("{}_sum {}\n{}_count {}\n", name, number(sum_), name, count_);
}

Metrics::Metrics()
    : time_to_first_token({0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}),
      inter_token_latency({0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}),
      request_duration({0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}) {
  // Every outcome a generation endpoint can have appears from the start, at zero, so that
  // rate() and alerts see the first one too (a series born at 1 has no increase to show).
  for (const char* endpoint : {"chat", "completions"})
    for (const char* outcome :
         {"success", "cancelled", "aborted", "invalid", "unauthorized", "not_found", "too_large", "rejected", "error"})
      requests_[{endpoint, outcome}] = 0;
}

void Metrics::count_request(const std::string& endpoint, const std::string& outcome) {
  std::lock_guard lock(mutex_);
  ++requests_[{endpoint, outcome}];
}

void Metrics::add_models(const std::vector<std::string>& names) {
  std::lock_guard lock(mutex_);
  for (const std::string& name : names) models_.emplace(name, 0);
}

void Metrics::count_model(const std::string& name) {
  std::lock_guard lock(mutex_);
  const auto it = models_.find(name);
  if (it != models_.end()) ++it->second;
}

void Metrics::add_usage(const RequestUsage& usage) {
  std::lock_guard lock(mutex_);
  prompt_tokens_ += static_cast<uint64_t>(usage.prompt_tokens);
  cached_prompt_tokens_ += static_cast<uint64_t>(usage.cached_tokens);
  completion_tokens_ += static_cast<uint64_t>(usage.completion_tokens);
}

std::string Metrics::render(const SchedulerStats& s) const {
  std::string out;
  {
    std::lock_guard lock(mutex_);
    header(out, "frugal_requests_total", "counter",
           "HTTP requests by endpoint and outcome: chat and completions (the generation routes, every outcome), "
           "other (any other route, its refusals only: unauthorized, too_large)");
    for (const auto& [key, n] : requests_)
      out += fmt::format("frugal_requests_total{{endpoint=\"{}\",outcome=\"{}\"}} {}\n", key.first, key.second, n);
    if (!models_.empty()) {
      header(out, "frugal_model_requests_total", "counter",
             "Generation requests accepted, by the model they named: the base or a --lora-module adapter");
      for (const auto& [name, n] : models_)
        out += fmt::format("frugal_model_requests_total{{model=\"{}\"}} {}\n", name, n);
    }
    counter(out, "frugal_prompt_tokens_total", prompt_tokens_, "Prompt tokens of finished requests");
    counter(out, "frugal_prompt_tokens_cached_total", cached_prompt_tokens_,
            "Prompt tokens of finished requests taken from the prefix cache");
    counter(out, "frugal_generation_tokens_total", completion_tokens_, "Generated tokens of finished requests");
  }
  time_to_first_token.render(out, "frugal_time_to_first_token_seconds",
                             "Time from a request's arrival to its first generated token");
  inter_token_latency.render(out, "frugal_inter_token_latency_seconds",
                             "Time between consecutive generated tokens of a choice");
  request_duration.render(out, "frugal_request_duration_seconds", "Time from a request's arrival to its end");
  gauge(out, "frugal_queue_length", s.queued_requests, "Requests waiting for admission");
  gauge(out, "frugal_requests_active", s.active_requests, "Requests submitted and not finished");
  gauge(out, "frugal_running_sequences", s.running_sequences, "Sequences in the batch");
  gauge(out, "frugal_waiting_sequences", s.waiting_sequences, "Sequences waiting for admission (new or preempted)");
  // Not "_total", which Prometheus reserves for counters (promtool refused the page).
  gauge(out, "frugal_kv_blocks", s.kv_blocks_total, "KV cache blocks");
  gauge(out, "frugal_kv_blocks_used", s.kv_blocks_used, "KV cache blocks held by sequences");
  gauge(out, "frugal_kv_blocks_cached", s.kv_blocks_cached,
        "KV cache blocks held only by the prefix cache (reusable, freed on demand)");
  gauge(out, "frugal_kv_blocks_free", s.kv_blocks_free, "KV cache blocks in the free pool");
  gauge(out, "frugal_kv_block_size", s.kv_block_size, "Positions per KV cache block");
  counter(out, "frugal_prefix_cache_lookups_total", s.prefix_lookups,
          "Admissions of a new prompt that looked up the prefix cache");
  counter(out, "frugal_prefix_cache_hits_total", s.prefix_hits,
          "Lookups that reused at least one cached block");
  counter(out, "frugal_prefix_cache_hit_tokens_total", s.prefix_hit_tokens,
          "Prompt tokens taken from the prefix cache");
  counter(out, "frugal_prompt_tokens_computed_total", s.prompt_tokens_computed,
          "Prompt tokens run through the model");
  counter(out, "frugal_generated_tokens_total", s.generated_tokens,
          "Tokens sampled by the engine");
  counter(out, "frugal_preemptions_total", s.preemptions,
          "Sequences preempted to free KV blocks (fed again later)");
  counter(out, "frugal_engine_steps_total", s.steps, "Forward passes of the engine");
  counter(out, "frugal_batch_rows_total", s.batch_rows, "Rows of every forward pass together");
  return out;
}

}  // namespace frugal::server
