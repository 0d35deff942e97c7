#include "server/http_server.h"

#include <httplib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <ctime>
#include <memory>
#include <optional>
#include <regex>

#include "core/check.h"
#include "core/log.h"
#include "runtime/engine.h"
#include "server/connection_pool.h"
#include "server/generation_handler.h"
#include "server/openai_response.h"
#include "server/request_builder.h"
#include "server/web_assets.h"

namespace frugal::server {
namespace {

// cpp-httplib 0.11 listens with a backlog of 5 (a compile-time constant of the Debian
// library): a burst of clients connecting at once would see dropped SYNs and one-second
// retransmission stalls. listen() again on the bound socket raises the backlog.
class Listener : public httplib::Server {
 public:
  void raise_backlog(int backlog) {
    if (::listen(svr_sock_, backlog) != 0) log_warn("could not raise the listen backlog to {}", backlog);
  }
  // cpp-httplib's stop() does nothing until listen_after_bind() has marked the server running,
  // and the server then served for good: a SIGTERM just after "listening" hung the process (2
  // runs in 6). Closing the socket works at any time: the accept loop ends, or never starts.
  void stop_listening() {
    const int sock = svr_sock_.exchange(INVALID_SOCKET);
    if (sock == INVALID_SOCKET) return;
    ::shutdown(sock, SHUT_RDWR);
    ::close(sock);
  }
};

bool constant_time_equal(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

bool starts_with_ignoring_case(const std::string& s, const std::string& prefix) {
  return s.size() >= prefix.size() && std::equal(prefix.begin(), prefix.end(), s.begin(), [](char a, char b) {
           return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b));
         });
}

bool takes_body(const httplib::Request& req) {
  return req.method == "POST" || req.method == "PUT" || req.method == "PATCH" || req.method == "DELETE";
}

// Answers `error` and closes the connection once the answer is sent: for a request refused
// before its body is read, or one cpp-httplib could not parse. cpp-httplib 0.11 keeps a
// connection open whatever the response says (it decides from the request's headers), and the
// next "request" on it was read from the unread body: a client's next request got the answer
// to its last body's text, and a body that held "GET /health HTTP/1.1" was served as a request
// (a proxy that shares connections would hand such answers to other users). The header tells
// the client; the body's provider then reports failure once it has written everything, which
// ends cpp-httplib's keep-alive loop and closes the socket. (Shutting the socket down by its
// descriptor needed the client's address, which a request whose headers did not parse lacks.)
void refuse_and_close(httplib::Response& res, const ApiError& error) {
  res.status = error.status;
  res.set_header("Connection", "close");
  auto body = std::make_shared<std::string>(error_json(error));
  res.body.clear();
  res.set_content_provider(body->size(), "application/json",
                           [body](size_t offset, size_t length, httplib::DataSink& sink) {
                             sink.write(body->data() + offset, length);
                             return false;  // written: now close
                           });
}

// A Content-Length that is not one decimal number: cpp-httplib reads "abc" as 0 and leaves the
// body's bytes to be read as the next request; two different lengths are the classic request
// smuggling. Refused before the body is read, naming the header.
std::optional<ApiError> bad_content_length(const httplib::Request& req) {
  const size_t count = req.get_header_value_count("Content-Length");
  if (count == 0) return std::nullopt;
  if (count > 1)
    return ApiError(400, fmt::format("{} {} has {} Content-Length headers: send one", req.method, req.path, count),
                    "", "invalid_request_error");
  const std::string v = req.get_header_value("Content-Length");
  if (v.empty() || v.size() > 19 || v.find_first_not_of("0123456789") != std::string::npos)
    return ApiError(400, fmt::format("{} {} has Content-Length '{}': expected the body's size in bytes", req.method,
                                     req.path, v.substr(0, 64)),
                    "", "invalid_request_error");
  return std::nullopt;
}

// A body the size limit cannot bound before it is read: cpp-httplib applies --max-body to
// Content-Length alone, and reads a chunked body, or inflates a compressed one, without
// limit (a 97 KB gzip body became 100 MB, a chunked one past the limit was served). Such a
// request is refused naming what to send instead; empty when the body is fine.
std::optional<ApiError> unbounded_body(const httplib::Request& req) {
  const std::string encoding = req.get_header_value("Content-Encoding");
  if (!encoding.empty() && encoding != "identity")
    return ApiError(415,
                    fmt::format("Content-Encoding '{}' is not accepted: send the JSON body uncompressed", encoding),
                    "", "invalid_request_error");
  if (req.has_header("Transfer-Encoding"))
    return ApiError(411, fmt::format("{} {} has a body in Transfer-Encoding '{}': send it with a Content-Length",
                                     req.method, req.path, req.get_header_value("Transfer-Encoding")),
                    "", "invalid_request_error");
  return std::nullopt;
}

std::vector<std::string> adapter_names(const std::vector<ServedAdapter>& adapters) {
  std::vector<std::string> names;
  for (const ServedAdapter& a : adapters) names.push_back(a.name);
  return names;
}

bool needs_key(const std::string& path) {
  return path.rfind("/v1/", 0) == 0 || path == "/metrics" || path == "/completions" || path == "/chat/completions" ||
         path.rfind("/models", 0) == 0 ||
         path == "/tokenize" || path == "/detokenize";
}

}  // namespace

class HttpServer::Impl {
 public:
  Impl(Scheduler& scheduler, const RequestBuilder& builder, ServerOptions options)
      : scheduler_(scheduler),
        builder_(builder),
        options_(std::move(options)),
        generation_(scheduler, builder, metrics_, options_.model_id, adapter_names(options_.adapters), options_.limits),
        created_(static_cast<int64_t>(std::time(nullptr))),
        n_ctx_(scheduler.engine().n_ctx()),
        n_vocab_(scheduler.engine().config().n_vocab) {
    // Threads start as connections need them (each holds one for its keep-alive life), so idle
    // keep-alive clients cannot leave a new one waiting unanswered; a request that waits for a
    // slot holds its thread, hence the floor of every running and queued request.
    const int threads = options_.http_threads > 0
                            ? options_.http_threads
                            : std::max(1024, scheduler.options().max_sequences + scheduler.options().max_queued + 32);
    http_.new_task_queue = [threads] { return new ConnectionPool(static_cast<size_t>(threads)); };
    http_.set_payload_max_length(options_.max_body_bytes);
    http_.set_read_timeout(options_.timeout_seconds, 0);
    http_.set_write_timeout(options_.timeout_seconds, 0);
    // cpp-httplib waits the keep-alive time for a connection's first request too: --keep-alive 0
    // dropped every connection whose request was not there within ~10 ms. 0 is one request per
    // connection, the first awaited as long as by default.
    const bool one_request = options_.keep_alive_seconds == 0;
    http_.set_keep_alive_timeout(one_request ? 5 : options_.keep_alive_seconds);
    http_.set_keep_alive_max_count(one_request ? 1 : 1000);
    http_.set_tcp_nodelay(true);  // each streamed token goes out at once
    http_.set_default_headers({{"Access-Control-Allow-Origin", "*"}});
    // cpp-httplib's default sets SO_REUSEPORT, which lets a second server bind the same port
    // and silently take half of its connections. SO_REUSEADDR alone still allows a restart
    // while old connections linger in TIME_WAIT, and a port in use is an error at bind().
    http_.set_socket_options([](int sock) {
      const int yes = 1;
      ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    });
    routes();
  }

  int bind() {
    const int port = options_.port == 0 ? http_.bind_to_any_port(options_.host)
                                        : (http_.bind_to_port(options_.host, options_.port) ? options_.port : -1);
    if (port <= 0)
      fail("cannot listen on {}:{} (in use, not an address of this machine, or not allowed)", options_.host,
           options_.port);
    http_.raise_backlog(1024);
    return port;
  }

  void serve() { http_.listen_after_bind(); }
  void stop() { http_.stop_listening(); }
  void begin_shutdown() { generation_.begin_shutdown(); }
  void close_connections() { generation_.close_connections(); }
  Metrics& metrics() { return metrics_; }
  int in_flight() const { return generation_.in_flight(); }

 private:
  void routes() {
    http_.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      if (req.method == "OPTIONS") {  // CORS preflight of browser clients on other origins
        res.status = 204;
        res.set_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS");
        // The headers the browser asks for: openai-node adds x-stainless-* (and OpenAI-Project),
        // and a fixed list failed its preflight. Echoed only when they are plain header names.
        const std::string asked = req.get_header_value("Access-Control-Request-Headers");
        const bool plain = asked.size() <= 1024 && asked.find_first_not_of("abcdefghijklmnopqrstuvwxyz"
                                                                           "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_, ") ==
                                                       std::string::npos;
        res.set_header("Access-Control-Allow-Headers", !asked.empty() && plain ? asked : "Authorization, Content-Type");
        res.set_header("Access-Control-Max-Age", "86400");
        return httplib::Server::HandlerResponse::Handled;
      }
      if (takes_body(req)) {
        std::optional<ApiError> refused = bad_content_length(req);
        if (!refused) refused = unbounded_body(req);
        if (refused) {
          refuse_and_close(res, *refused);
          return httplib::Server::HandlerResponse::Handled;
        }
        // cpp-httplib reads a body with no Content-Length until the connection closes, so
        // such a request would wait for the read timeout. RFC 9112 gives it an empty body; it
        // is answered at once instead (411).
        if (!req.has_header("Content-Length")) {
          if (allowed_methods(req.path).find(req.method) == std::string::npos) {
            no_route(req, res);
          } else {
            respond_error(res, ApiError(411,
                                        fmt::format("{} {} has no Content-Length: send the JSON body with its length",
                                                    req.method, req.path),
                                        "", "invalid_request_error"));
          }
          return httplib::Server::HandlerResponse::Handled;
        }
      }
      if (options_.api_key.empty() || !needs_key(req.path)) return httplib::Server::HandlerResponse::Unhandled;
      const std::string auth = req.get_header_value("Authorization");
      const std::string prefix = "Bearer ";  // the scheme is case-insensitive (RFC 9110 11.1)
      if (starts_with_ignoring_case(auth, prefix) &&
          constant_time_equal(auth.substr(prefix.size()), options_.api_key))
        return httplib::Server::HandlerResponse::Unhandled;
      res.set_header("WWW-Authenticate", "Bearer");
      const ApiError unauthorized(401,
                                  auth.empty() ? "no API key: send the header 'Authorization: Bearer KEY'"
                                               : "the API key is not valid",
                                  "", "authentication_error", "invalid_api_key");
      // The body is not read for a request refused here: the connection cannot carry another.
      if (takes_body(req) && req.get_header_value("Content-Length") != "0") {
        refuse_and_close(res, unauthorized);
      } else {
        respond_error(res, unauthorized);
      }
      metrics_.count_request(endpoint_label(req.path), "unauthorized");
      return httplib::Server::HandlerResponse::Handled;
    });

    const auto chat = [this](const httplib::Request& req, httplib::Response& res) {
      generation_.handle(Endpoint::kChat, req, res);
    };
    const auto completions = [this](const httplib::Request& req, httplib::Response& res) {
      generation_.handle(Endpoint::kCompletions, req, res);
    };
    post("/v1/chat/completions", chat);
    post("/chat/completions", chat);
    post("/v1/completions", completions);
    post("/completions", completions);

    // llama.cpp's tokenizer endpoints; behind the API key like /v1.
    post("/tokenize", [this](const httplib::Request& req, httplib::Response& res) {
      try {
        const TokenizeRequest r = parse_tokenize(req.body, options_.limits);
        const Tokenizer& t = tokenizer_or_throw();
        std::vector<int32_t> ids = t.encode(r.content, r.add_special && t.add_bos_default(), r.parse_special);
        if (r.add_special) t.append_eos_if_default(ids);
        if (r.add_special && t.starts_with_two_bos(ids)) warn_two_bos(t, "the content");
        if (!r.with_pieces) {
          res.set_content(tokenize_json(ids), "application/json");
          return;
        }
        std::vector<std::string> pieces;
        for (const int32_t id : ids) pieces.push_back(t.token_bytes(id, /*render_special=*/true));
        res.set_content(tokenize_json(ids, pieces), "application/json");
      } catch (const ApiError& e) {
        respond_error(res, e);
      }
    });
    post("/detokenize", [this](const httplib::Request& req, httplib::Response& res) {
      try {
        const std::vector<int32_t> ids = parse_detokenize(req.body, options_.limits);
        const Tokenizer& t = tokenizer_or_throw();
        // The model's ids, as /v1/completions takes them: an embedding padded past the tokenizer
        // (Qwen: 151,936 rows, 151,669 tokens) has ids the model can sample, which decode, as in
        // generation (token_bytes), to no text.
        const int64_t n_ids = std::max<int64_t>(n_vocab_, t.n_vocab());
        for (const int32_t id : ids)
          if (id >= n_ids)
            throw ApiError(400, fmt::format("token id {} is outside the vocabulary of {} tokens", id, n_ids),
                           "tokens");
        // As llama.cpp's /detokenize: control tokens are written out.
        res.set_content(detokenize_json(t.decode(ids, /*render_special=*/true)), "application/json");
      } catch (const ApiError& e) {
        respond_error(res, e);
      }
    });

    // Also without /v1, as the generation routes: a client whose base URL is the bare host
    // (OpenWebUI) lists {base}/models.
    for (const char* prefix : {"/v1", ""}) {
      get(std::string(prefix) + "/models", [this](const httplib::Request&, httplib::Response& res) {
        res.set_content(models_json(options_.model_id, created_, n_ctx_, n_vocab_, options_.adapters),
                        "application/json");
      });
      get(std::string(prefix) + "/models/(.+)", [this](const httplib::Request& req, httplib::Response& res) {
        const std::string name = req.matches[1].str();
        const auto& adapters = options_.adapters;
        const auto it = std::find_if(adapters.begin(), adapters.end(), [&](const auto& a) { return a.name == name; });
        if (name != options_.model_id && it == adapters.end()) {
          respond_error(res, ApiError(404, fmt::format("The model '{}' does not exist", name), "model",
                                      "invalid_request_error", "model_not_found"));
          return;
        }
        res.set_content(model_json(options_.model_id, created_, it == adapters.end() ? nullptr : &*it),
                        "application/json");
      });
    }
    get("/health", [this](const httplib::Request&, httplib::Response& res) {
      if (generation_.shutting_down()) {
        res.status = 503;
        res.set_content(R"({"status":"shutting_down"})", "application/json");
      } else {
        res.set_content(R"({"status":"ok"})", "application/json");
      }
    });
    get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(metrics_.render(scheduler_.stats()), "text/plain; version=0.0.4; charset=utf-8");
    });
    get("/(|index\\.html|[A-Za-z0-9_-]+\\.(js|css|svg))", [](const httplib::Request& req, httplib::Response& res) {
      const WebAsset* asset = find_web_asset(req.path);
      if (asset == nullptr) {
        respond_error(res, ApiError(404, fmt::format("no file {}", req.path), "", "not_found_error"));
        return;
      }
      res.set_header("Cache-Control", "no-cache");
      res.set_content(reinterpret_cast<const char*>(asset->data), asset->size, asset->content_type);
    });

    // cpp-httplib's own refusals (unknown route, body too large, unparsable request) come
    // without a body: give them the OpenAI error shape too.
    http_.set_error_handler(httplib::Server::HandlerWithResponse([this](const httplib::Request& req,
                                                                        httplib::Response& res) {
      // An answer of ours (a body, or refuse_and_close's provider) is left as it is.
      if (!res.body.empty() || res.content_length_ > 0) return httplib::Server::HandlerResponse::Unhandled;
      std::string message = fmt::format("{} {}: the request was refused (HTTP {})", req.method, req.path, res.status);
      std::string type = "invalid_request_error";
      if (res.status == 404) {
        no_route(req, res);
        return httplib::Server::HandlerResponse::Handled;
      } else if (res.status == 400 || res.status == 414) {
        // The request line or headers did not parse: where the request ends is unknown, and
        // what follows on the connection cannot be trusted to be a request.
        refuse_and_close(res, ApiError(res.status, res.status == 414 ? "the request line is longer than 8192 bytes"
                                                                     : "the request could not be parsed: a malformed "
                                                                       "request line or header, or a header line "
                                                                       "longer than 8192 bytes",
                                       "", type));
        return httplib::Server::HandlerResponse::Handled;
      } else if (res.status == 413) {
        message = fmt::format("the request body is larger than the limit of {} bytes", options_.max_body_bytes);
        // cpp-httplib caps form bodies (curl -d's default type) at 8 KB, whatever the limit.
        if (req.get_header_value("Content-Type").starts_with("application/x-www-form-urlencoded"))
          message = "the request body was sent as application/x-www-form-urlencoded (curl -d's default), which is "
                    "limited to 8192 bytes: send it with 'Content-Type: application/json'";
        metrics_.count_request(endpoint_label(req.path), "too_large");
      }
      respond_error(res, ApiError(res.status, message, "", type));
      return httplib::Server::HandlerResponse::Handled;
    }));
    http_.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
      std::string what = "unknown exception";
      try {
        std::rethrow_exception(ep);
      } catch (const std::exception& e) {
        what = e.what();
      } catch (...) {
      }
      log_warn("request failed: {}", what);
      respond_error(res, ApiError(500, fmt::format("internal error: {}", what), "", "server_error"));
    });
  }

  // Routes are registered through these, so that a known path asked with another method gets
  // 405 and its Allow header instead of cpp-httplib's 404.
  template <typename Handler>
  void post(const std::string& pattern, Handler handler) {
    http_.Post(pattern, std::move(handler));
    routes_.push_back({std::regex(pattern), "POST"});
  }
  template <typename Handler>
  void get(const std::string& pattern, Handler handler) {
    http_.Get(pattern, std::move(handler));
    routes_.push_back({std::regex(pattern), "GET"});
  }
  // 405 with the methods the path takes, or 404 for a path the server does not have.
  void no_route(const httplib::Request& req, httplib::Response& res) const {
    const std::string allowed = allowed_methods(req.path);
    if (allowed.empty()) {
      respond_error(res, ApiError(404, fmt::format("no route for {} {}", req.method, req.path), "", "not_found_error"));
      return;
    }
    res.set_header("Allow", allowed + ", OPTIONS");
    respond_error(
        res, ApiError(405, fmt::format("{} {}: the method is not allowed; use {}", req.method, req.path, allowed), ""));
  }
  std::string allowed_methods(const std::string& path) const {
    std::string allowed;
    for (const auto& [pattern, method] : routes_)
      if (std::regex_match(path, pattern) && allowed.find(method) == std::string::npos)
        allowed += (allowed.empty() ? "" : ", ") + method;
    return allowed;
  }

  const Tokenizer& tokenizer_or_throw() const {
    if (builder_.tokenizer() == nullptr) throw ApiError(400, "the model has no tokenizer");
    return *builder_.tokenizer();
  }

  Scheduler& scheduler_;
  const RequestBuilder& builder_;
  ServerOptions options_;
  Metrics metrics_;
  GenerationHandler generation_;
  int64_t created_;
  int64_t n_ctx_, n_vocab_;  // read once: the engine belongs to the engine thread
  std::vector<std::pair<std::regex, std::string>> routes_;  // pattern, method
  Listener http_;
};

HttpServer::HttpServer(Scheduler& scheduler, const RequestBuilder& builder, ServerOptions options)
    : impl_(std::make_unique<Impl>(scheduler, builder, std::move(options))) {}
HttpServer::~HttpServer() = default;
int HttpServer::bind() {
  return impl_->bind();
}
void HttpServer::serve() {
  impl_->serve();
}
void HttpServer::begin_shutdown() {
  impl_->begin_shutdown();
}
void HttpServer::stop() {
  impl_->stop();
}
Metrics& HttpServer::metrics() {
  return impl_->metrics();
}
int HttpServer::requests_in_flight() const {
  return impl_->in_flight();
}
void HttpServer::close_connections() {
  impl_->close_connections();
}

}  // namespace frugal::server
