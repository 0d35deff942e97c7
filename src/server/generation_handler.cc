#include "server/generation_handler.h"

#include <httplib.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <memory>

#include "core/check.h"
#include "core/log.h"
#include "server/connection_watch.h"
#include "server/openai_response.h"

namespace frugal::server {
namespace {

using std::chrono::duration;

// How often a waiting handler looks at its connection.
constexpr std::chrono::milliseconds kPollInterval(100);

double seconds(SteadyClock::time_point from, SteadyClock::time_point to) {
  return duration<double>(to - from).count();
}

std::string outcome_of(int status) {
  switch (status) {
    case 401:
      return "unauthorized";
    case 404:
      return "not_found";
    case 413:
      return "too_large";
    case 429:
    case 503:
      return "rejected";
    default:
      return status >= 500 ? "error" : "invalid";
  }
}

ApiError engine_error(const StreamEvent& e) {
  if (e.error == RequestError::kShuttingDown)
    return ApiError(503, "the server shut down before the request finished", "", "server_error", "shutting_down");
  return ApiError(500, fmt::format("generation failed: {}", e.text), "", "server_error");
}

// Counts a response until it is completely written (a streamed one outlives its handler) and
// lists its connection meanwhile.
class InFlight {
 public:
  explicit InFlight(GenerationHandler& handler) : handler_(handler) { handler_.enter(); }
  ~InFlight() { handler_.leave(fd_); }
  InFlight(const InFlight&) = delete;
  InFlight& operator=(const InFlight&) = delete;
  void set_connection(int fd) {
    fd_ = fd;
    handler_.watch(fd);
  }

 private:
  GenerationHandler& handler_;
  int fd_ = -1;
};

// One request in flight, as its HTTP thread sees it: the event stream, the connection to
// watch, the latency bookkeeping and the outcome, recorded once.
class Call {
 public:
  Call(std::shared_ptr<RequestStream> stream, ResponseFormat format, SteadyClock::time_point arrival,
       Metrics& metrics, std::string endpoint, int fd)
      : stream(std::move(stream)),
        format(std::move(format)),
        arrival_(arrival),
        metrics_(metrics),
        endpoint_(std::move(endpoint)),
        fd_(fd),
        last_token_(static_cast<size_t>(this->format.n_choices)) {}

  // Waits for the next events; false when the client went away (the request is then cancelled).
  bool wait(std::vector<StreamEvent>& events) {
    events.clear();
    for (;;) {
      const bool got = stream->wait(events, kPollInterval);
      // Tokens may arrive faster than the poll interval: look at the connection by the clock.
      const auto now = SteadyClock::now();
      if (now - last_check_ >= kPollInterval) {
        last_check_ = now;
        if (connection_closed(fd_)) {
          cancel();
          return false;
        }
      }
      if (got) break;
    }
    for (const auto& e : events) observe(e);
    return true;
  }

  void cancel() {
    stream->cancel();
    record("cancelled");
  }

  void record(const std::string& outcome) {
    if (recorded_) return;
    recorded_ = true;
    metrics_.count_request(endpoint_, outcome);
  }

  std::shared_ptr<RequestStream> stream;
  ResponseFormat format;

 private:
  void observe(const StreamEvent& e) {
    if (e.kind == StreamEvent::Kind::kToken) {
      if (!first_token_) {
        first_token_ = true;
        metrics_.time_to_first_token.observe(seconds(arrival_, e.time));
      }
      auto& last = last_token_[static_cast<size_t>(e.choice)];
      if (last != SteadyClock::time_point{}) metrics_.inter_token_latency.observe(seconds(last, e.time));
      last = e.time;
    } else if (e.kind == StreamEvent::Kind::kDone) {
      metrics_.request_duration.observe(seconds(arrival_, e.time));
      metrics_.add_usage(e.usage);
    }
  }

  SteadyClock::time_point arrival_;
  Metrics& metrics_;
  std::string endpoint_;
  int fd_;
  SteadyClock::time_point last_check_ = SteadyClock::now();
  bool first_token_ = false;
  bool recorded_ = false;
  std::vector<SteadyClock::time_point> last_token_;  // per choice
};

void collect(Call& call, httplib::Response& res) {
  std::vector<ChoiceResult> choices(static_cast<size_t>(call.format.n_choices));
  std::vector<StreamEvent> events;
  for (;;) {
    if (!call.wait(events)) return;  // nobody is left to answer
    for (auto& e : events) {
      // Token and finish events name one of the request's choices (the scheduler's invariant).
      const auto choice = [&]() -> ChoiceResult& {
        FRUGAL_CHECK(e.choice >= 0 && e.choice < call.format.n_choices, "an event for choice {} of {}", e.choice,
                     call.format.n_choices);
        return choices[static_cast<size_t>(e.choice)];
      };
      switch (e.kind) {
        case StreamEvent::Kind::kToken: {
          ChoiceResult& c = choice();
          c.text += e.text;
          c.tokens.push_back(e.token);
          if (e.has_logprobs) {
            c.logprobs.push_back(std::move(e.logprobs));
            c.text_offsets.push_back(e.text_offset);
          }
          break;
        }
        case StreamEvent::Kind::kFinish: {
          ChoiceResult& c = choice();
          c.text += e.text;
          c.finish = e.finish;
          break;
        }
        case StreamEvent::Kind::kDone:
          res.status = 200;
          res.set_content(response_json(call.format, choices, e.usage), "application/json");
          call.record("success");
          return;
        case StreamEvent::Kind::kError: {
          const ApiError error = engine_error(e);
          respond_error(res, error);
          call.record(e.error == RequestError::kShuttingDown ? "aborted" : "error");
          return;
        }
      }
    }
  }
}

// The server-sent-event side of a streamed request: called by cpp-httplib whenever it can
// write more, until sink.done().
class StreamWriter {
 public:
  explicit StreamWriter(std::shared_ptr<Call> call) : call_(std::move(call)) {}

  bool pump(httplib::DataSink& sink) {
    if (finished_) {
      sink.done();
      return true;
    }
    const ResponseFormat& f = call_->format;
    std::string out;
    if (!started_) {
      started_ = true;
      // OpenAI sends each choice's role first, before any token exists.
      for (int32_t c = 0; c < f.n_choices; ++c) {
        if (f.endpoint == Endpoint::kChat) out += role_chunk(f, c);
        if (static_cast<size_t>(c) < f.echo.size() && !f.echo[c].empty())
          out += content_chunk(f, c, f.echo[c], {}, {}, {});
      }
      if (!out.empty() && !write(sink, out)) return false;
      out.clear();
    }
    if (!call_->wait(events_)) return false;
    for (auto& e : events_) {
      switch (e.kind) {
        case StreamEvent::Kind::kToken:
          if (!e.text.empty() || e.has_logprobs || f.return_token_ids) {
            std::vector<TokenLogprobs> lps;
            if (e.has_logprobs) lps.push_back(std::move(e.logprobs));
            out += content_chunk(f, e.choice, e.text, {e.token}, lps, {e.text_offset});
          }
          break;
        case StreamEvent::Kind::kFinish:
          if (!e.text.empty()) out += content_chunk(f, e.choice, e.text, {}, {}, {});
          out += finish_chunk(f, e.choice, e.finish);
          break;
        case StreamEvent::Kind::kDone:
          if (f.include_usage) out += usage_chunk(f, e.usage);
          out += kDoneFrame;
          finished_ = true;
          call_->record("success");
          break;
        case StreamEvent::Kind::kError:
          // The status line is long gone: the error travels as the last event.
          out += error_frame(engine_error(e));
          out += kDoneFrame;
          finished_ = true;
          call_->record(e.error == RequestError::kShuttingDown ? "aborted" : "error");
          break;
      }
    }
    if (!out.empty() && !write(sink, out)) return false;
    if (finished_) sink.done();
    return true;
  }

  // cpp-httplib is done with the response: when it did not end normally the client is gone.
  void release(bool success) {
    if (!finished_ || !success) call_->cancel();
  }

 private:
  bool write(httplib::DataSink& sink, const std::string& data) {
    if (sink.write(data.data(), data.size())) return true;
    call_->cancel();
    return false;
  }

  std::shared_ptr<Call> call_;
  std::vector<StreamEvent> events_;
  bool started_ = false;
  bool finished_ = false;
};

}  // namespace

void respond_error(httplib::Response& res, const ApiError& error) {
  res.status = error.status;
  res.set_content(error_json(error), "application/json");
}

void send_then(httplib::Response& res, std::string body, const std::string& content_type,
               std::function<void()> after) {
  auto text = std::make_shared<std::string>(std::move(body));
  res.body.clear();
  res.set_content_provider(
      text->size(), content_type,
      [text](size_t offset, size_t length, httplib::DataSink& sink) {
        return sink.write(text->data() + offset, length);
      },
      [after = std::move(after)](bool) { after(); });
}

GenerationHandler::GenerationHandler(Scheduler& scheduler, const RequestBuilder& builder, Metrics& metrics,
                                     std::string model_id, std::vector<std::string> adapters, RequestLimits limits)
    : scheduler_(scheduler),
      builder_(builder),
      metrics_(metrics),
      model_id_(std::move(model_id)),
      adapters_(std::move(adapters)),
      limits_(limits) {
  if (adapters_.empty()) return;
  std::vector<std::string> models = {model_id_};
  models.insert(models.end(), adapters_.begin(), adapters_.end());
  metrics_.add_models(models);
}

int32_t GenerationHandler::adapter_of(const std::string& model) const {
  if (model.empty() || model == model_id_) return 0;
  const auto it = std::find(adapters_.begin(), adapters_.end(), model);
  if (it != adapters_.end()) return static_cast<int32_t>(it - adapters_.begin()) + 1;
  std::string served = fmt::format("'{}'", model_id_);
  for (const std::string& a : adapters_) served += fmt::format(", '{}'", a);
  throw ApiError(404, fmt::format("The model '{}' does not exist: this server serves {}", model, served), "model",
                 "invalid_request_error", "model_not_found");
}

int GenerationHandler::retry_after_seconds() const {
  // The queue drains at about max_sequences requests per mean request duration.
  const SchedulerStats s = scheduler_.stats();
  const double mean = metrics_.request_duration.mean();
  const double wait = (mean > 0 ? mean : 1.0) * static_cast<double>(s.queued_requests + 1) /
                      static_cast<double>(scheduler_.options().max_sequences);
  return static_cast<int>(std::clamp(std::ceil(wait), 1.0, 60.0));
}

void GenerationHandler::handle(Endpoint endpoint, const httplib::Request& req, httplib::Response& res) {
  const auto arrival = SteadyClock::now();
  const std::string name = endpoint_label(req.path);
  auto in_flight = std::make_shared<InFlight>(*this);
  std::shared_ptr<Call> call;
  try {
    if (shutting_down_) {
      res.set_header("Retry-After", "5");
      throw ApiError(503, "the server is shutting down", "", "server_error", "shutting_down");
    }
    const ApiRequest api = parse_request(endpoint, req.body, limits_);
    const int32_t adapter = adapter_of(api.model);
    BuiltRequest built = builder_.build(api);
    built.generation.arrival = arrival;
    built.generation.adapter = adapter;
    const int32_t n_choices = static_cast<int32_t>(built.generation.prompts.size()) * built.generation.n;

    Submission sub;
    try {
      sub = scheduler_.submit(std::move(built.generation));
    } catch (const ApiError&) {
      throw;
    } catch (const Error& e) {
      throw ApiError(400, e.what());
    }
    if (sub.status == SubmitStatus::kQueueFull) {
      res.set_header("Retry-After", std::to_string(retry_after_seconds()));
      throw ApiError(429,
                     fmt::format("the server is busy: {} requests are waiting already; retry later",
                                 scheduler_.options().max_queued),
                     "", "rate_limit_error", "queue_full");
    }
    if (sub.status == SubmitStatus::kShuttingDown) {
      res.set_header("Retry-After", "5");
      throw ApiError(503, "the server is shutting down", "", "server_error", "shutting_down");
    }

    ResponseFormat f;
    f.model = adapter == 0 ? model_id_ : adapters_[adapter - 1];  // the name asked for (the base's if none)
    metrics_.count_model(f.model);
    f.endpoint = endpoint;
    f.id = new_response_id(endpoint == Endpoint::kChat ? "chatcmpl-" : "cmpl-");
    f.created = static_cast<int64_t>(std::time(nullptr));
    f.n_choices = n_choices;
    f.logprobs = api.logprobs;
    f.return_token_ids = api.return_token_ids;
    f.include_usage = api.include_usage;
    f.tokenizer = builder_.tokenizer();
    if (api.echo)
      for (const auto& text : built.prompt_texts)
        for (int32_t j = 0; j < api.n; ++j) f.echo.push_back(text);
    const int fd = find_connection_socket(req.remote_addr, req.remote_port, req.local_port);
    if (fd < 0)
      log_debug("no socket found for the connection {}:{} -> {}: a client that hangs up is noticed only when a write fails",
                req.remote_addr, req.remote_port, req.local_port);
    in_flight->set_connection(fd);
    call = std::make_shared<Call>(sub.stream, std::move(f), arrival, metrics_, name, fd);
    if (!api.stream) {
      collect(*call, res);
      // The body is counted in flight until written (the end of a drain looks for it).
      if (!res.body.empty()) {
        const std::string type = res.get_header_value("Content-Type");
        res.headers.erase("Content-Type");
        send_then(res, std::move(res.body), type, [in_flight] {});
      }
      return;
    }
    res.status = 200;
    res.set_header("Cache-Control", "no-cache");
    res.set_header("X-Accel-Buffering", "no");  // proxies must not hold events back
    auto writer = std::make_shared<StreamWriter>(call);
    // cpp-httplib calls the provider outside its handler's try/catch: an exception there (out of
    // memory) would end the process, so it ends this response instead.
    auto pump = [writer, in_flight](size_t, httplib::DataSink& sink) {
      try {
        return writer->pump(sink);
      } catch (const std::exception& e) {
        log_warn("a streamed response failed: {}", e.what());
        return false;
      }
    };
    // HTTP/1.0 has no chunked encoding (RFC 9112 6.1): the stream ends where the connection
    // does, which the response says (cpp-httplib 0.11 still adds its Keep-Alive header, and
    // keeps a connection that asked for Keep-Alive open: the stream ended 5 s late). So the
    // connection is shut down once the stream is written.
    const bool close_after = req.version == "HTTP/1.0";
    auto release = [writer, in_flight, close_after, fd](bool success) {
      writer->release(success);
      if (close_after && fd >= 0) ::shutdown(fd, SHUT_RDWR);
    };
    if (close_after) {
      res.set_header("Connection", "close");
      res.set_content_provider("text/event-stream", pump, release);
    } else {
      res.set_chunked_content_provider("text/event-stream", pump, release);
    }
  } catch (const ApiError& e) {
    respond_error(res, e);
    if (call) {
      call->record(outcome_of(e.status));
    } else {
      metrics_.count_request(name, outcome_of(e.status));
    }
  } catch (const std::exception& e) {
    // A bug or an exhausted machine: the client gets a 500, the server goes on.
    log_warn("{} request failed: {}", name, e.what());
    if (call) call->stream->cancel();
    respond_error(res, ApiError(500, fmt::format("internal error: {}", e.what()), "", "server_error"));
    metrics_.count_request(name, "error");
  }
}

void GenerationHandler::enter() {
  ++in_flight_;
}

void GenerationHandler::watch(int fd) {
  if (fd < 0) return;
  std::lock_guard lock(fds_mutex_);
  fds_.insert(fd);
}

void GenerationHandler::leave(int fd) {
  if (fd >= 0) {
    std::lock_guard lock(fds_mutex_);
    if (const auto it = fds_.find(fd); it != fds_.end()) fds_.erase(it);
  }
  --in_flight_;
}

void GenerationHandler::close_connections() {
  std::lock_guard lock(fds_mutex_);
  for (const int fd : fds_) ::shutdown(fd, SHUT_RDWR);
}

}  // namespace frugal::server
