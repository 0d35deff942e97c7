// frugal's OpenAI-compatible HTTP server (cpp-httplib): routes, API key, limits, timeouts,
// the embedded chat page, metrics, and the drain on shutdown. Handlers run on a pool of HTTP
// threads; each hands its typed request to the Scheduler, whose engine thread alone touches the
// model, and waits on that request's event stream.
//
//   POST /v1/chat/completions, /v1/completions  (also without /v1)  streamed or not
//   GET  /v1/models, /v1/models/{id}
//   GET  /health     200 {"status":"ok"}; 503 while shutting down
//   GET  /metrics    Prometheus text format
//   POST /tokenize, /detokenize   llama.cpp's tokenizer endpoints
//   GET  /           the chat page (static files compiled into the binary)
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "runtime/scheduler.h"
#include "server/metrics.h"
#include "server/openai_request.h"
#include "server/openai_response.h"
#include "server/request_builder.h"

namespace frugal::server {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;                          // 0: any free port (bind() says which)
  std::string api_key;                      // empty: no authentication
  std::string model_id;                     // the name clients use in "model"
  std::vector<ServedAdapter> adapters;      // LoRA adapters by name, GenerationRequest::adapter 1, 2, ...
  size_t max_body_bytes = size_t{4} << 20;  // larger bodies get 413
  int timeout_seconds = 600;                // reading a request, writing a response
  int keep_alive_seconds = 5;               // an idle keep-alive connection is closed after this
  int http_threads = 0;  // most HTTP threads; 0: 1024, or every running and queued request plus 32 if more
  RequestLimits limits;
};

class HttpServer {
 public:
  HttpServer(Scheduler& scheduler, const RequestBuilder& builder, ServerOptions options);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds the listening socket; returns the port. Throws frugal::Error naming host and port.
  int bind();
  // Accepts and serves connections until stop(); run it on a thread of its own.
  void serve();
  // New generation requests get 503 and /health says so; requests in flight go on.
  void begin_shutdown();
  // Closes the listening socket and waits for the connections in progress.
  void stop();

  Metrics& metrics();
  // Generation requests whose response is not completely written yet.
  int requests_in_flight() const;
  // Shuts down the connections of those requests (a client that stopped reading would hold
  // stop() for up to twice the write timeout).
  void close_connections();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace frugal::server
