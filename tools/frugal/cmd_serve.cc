// frugal serve: an OpenAI-compatible HTTP server over one model. Flags follow llama.cpp's
// llama-server where it has one (--parallel, --api-key, --timeout, --alias, -b), vLLM's for
// adapters chosen per request (--lora-module NAME=FOLDER, its --lora-modules).
//
// Threads: the main thread loads the model, starts the engine thread (the Scheduler, the
// only code that touches the Engine) and the HTTP listener, then waits for SIGTERM/SIGINT.
// A signal drains: new requests get 503, the ones in flight finish (up to --drain-timeout,
// or until a second signal), what is left is ended with a final error event, and the process
// exits with status 0. A signal during the model load ends the process at once, by that signal.
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <thread>

#include "chat/chat_template.h"
#include "core/check.h"
#include "core/log.h"
#include "perf/memory_limit.h"
#include "perf/memory_usage.h"
#include "runtime/engine.h"
#include "runtime/scheduler.h"
#include "server/http_server.h"
#include "server/request_builder.h"
#include "tools/frugal/commands.h"
#include "tools/frugal/common_options.h"
#include "tools/frugal/lora_modules.h"

namespace frugal::cli {
namespace {

struct ServeFlags {
  ModelFlags model;
  std::string host = "127.0.0.1";
  int port = 8080;
  int parallel = 4;
  int queue = 64;
  std::string api_key;
  std::string api_key_file;
  std::optional<int64_t> kv_blocks;  // 0 is an error, not "the default"
  std::optional<int64_t> kv_capacity;
  int64_t kv_block_size = 32;
  int64_t batch_size = 0;
  bool no_prefix_cache = false;
  ChatTemplateFlags chat_template;
  std::string alias;
  std::vector<std::string> lora_modules;  // NAME=FOLDER[:SCALE] each
  int timeout = 600;
  int keep_alive = 5;
  int64_t max_body = int64_t{4} << 20;
  int max_n = 16;
  int drain_timeout = 30;
  int http_threads = 0;
};

ServeFlags& flags() {
  static ServeFlags f;
  return f;
}

CLI::App* setup(CLI::App& app) {
  ServeFlags& f = flags();
  CLI::App* sub = app.add_subcommand("serve", "OpenAI-compatible HTTP server with continuous batching, and a chat page at /");
  add_model_flags(*sub, f.model);
  sub->get_option("--ctx")->description("Context per sequence in tokens (0: the model's, at most 4096)");
  sub->add_option("--host", f.host, "Address to listen on")->capture_default_str();
  sub->add_option("--port", f.port, "Port to listen on (0: any free port, printed at startup)")->capture_default_str();
  sub->add_option("--parallel,--np", f.parallel, "Sequences generated together (the batch)")->capture_default_str();
  sub->add_option("--queue", f.queue, "Requests that may wait for a slot; more get 429 with Retry-After")
      ->capture_default_str();
  sub->add_option("--api-key", f.api_key, "Require 'Authorization: Bearer KEY' on /v1/* and /metrics");
  sub->add_option("--api-key-file", f.api_key_file, "Read the API key from this file (keeps it out of ps)");
  sub->add_option("--kv-blocks", f.kv_blocks, "KV cache blocks across all sequences (default: --parallel contexts)");
  sub->add_option("--kv-capacity", f.kv_capacity, "KV cache positions across all sequences (instead of --kv-blocks)");
  sub->add_option("--kv-block-size", f.kv_block_size, "Positions per KV cache block (a multiple of 16)")
      ->capture_default_str();
  sub->add_option("-b,--batch-size", f.batch_size,
                  "Rows per forward pass: a decode row per running sequence plus prompt chunks (default: 128, at "
                  "least --parallel)");
  sub->add_flag("--no-prefix-cache", f.no_prefix_cache, "Do not reuse the KV blocks of shared prompt prefixes");
  add_chat_template_flags(*sub, f.chat_template);
  sub->add_option("--alias", f.alias, "Model name clients use in \"model\" (default: the model's file or folder name without .gguf, .bin or "
                  ".safetensors)");
  sub->add_option("--lora-module", f.lora_modules,
                  "LoRA adapter (a PEFT folder) that requests choose with \"model\": NAME; requests naming the base "
                  "(or none) run without it. Repeatable: one batch mixes requests of every adapter and of the base. "
                  "Loaded at startup only; the scale is the adapter's, not a request's")
      ->type_name("NAME=FOLDER[:SCALE]")
      ->expected(1)
      ->allow_extra_args(false)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  sub->add_option("--timeout", f.timeout,
                  "Seconds a read of a request or a write of a response may wait for the client before giving up "
                  "(each wait, not the whole request: put a proxy in front for untrusted clients)")
      ->capture_default_str();
  sub->add_option("--keep-alive", f.keep_alive, "Seconds an idle keep-alive connection stays open")
      ->capture_default_str();
  sub->add_option("--max-body", f.max_body, "Largest request body in bytes (larger: 413)")->capture_default_str();
  sub->add_option("--max-n", f.max_n, "Largest n (choices) a request may ask for")->capture_default_str();
  sub->add_option("--drain-timeout", f.drain_timeout,
                  "On SIGTERM, seconds to let requests in flight finish before ending them")
      ->capture_default_str();
  sub->add_option("--http-threads", f.http_threads,
                  "Most HTTP threads, one per open connection, started as needed (0: the larger of 1024 and "
                  "--parallel + --queue + 32)")
      ->capture_default_str();
  return sub;
}

std::string model_name(const std::string& path) {
  std::filesystem::path p(path);
  if (p.filename().empty()) p = p.parent_path();  // a folder given with a trailing slash
  std::string name = p.filename().string();
  for (const char* ext : {".gguf", ".bin", ".safetensors"})
    if (name.size() > std::strlen(ext) && name.ends_with(ext)) name.resize(name.size() - std::strlen(ext));
  return name.empty() ? "model" : name;
}

// `chosen`: the flags' choice, read before the model loads so that a bad one fails at once.
std::optional<ChatTemplate> choose_template(const ServeFlags& f, std::optional<ChatTemplate> chosen,
                                            const Engine& engine, std::string& note) {
  if (!engine.has_tokenizer()) {
    note = "none (no tokenizer: token-id completions only)";
    return std::nullopt;
  }
  if (chosen) {
    note = std::string(chosen->name());
    return chosen;
  }
  if (engine.chat_template().empty()) {
    // As llama.cpp's server: a model without a template gets ChatML.
    log_warn("{} has no chat template: chat completions use chatml (choose another with --chat-template)",
             f.model.model);
    ChatTemplate t = ChatTemplate::by_name("chatml");
    note = "chatml (the model has none)";
    return t;
  }
  ChatTemplate t = ChatTemplate::detect(engine.chat_template(), f.model.model);
  note = std::string(t.name());
  return t;
}

// ", LoRA adapters by request: a (FOLDER), b (FOLDER)", or nothing.
std::string adapters_note(const std::vector<NamedAdapter>& adapters) {
  std::string note;
  for (const NamedAdapter& a : adapters) note += fmt::format("{}{} ({})", note.empty() ? "" : ", ", a.name, a.folder);
  return note.empty() ? note : ", LoRA adapters by request: " + note;
}

// Waits for SIGTERM or SIGINT (blocked in every thread, so they arrive here) for up to
// `timeout`; the signal that came, or 0.
int wait_for_signal(const sigset_t& set, std::chrono::milliseconds timeout) {
  const timespec ts{static_cast<time_t>(timeout.count() / 1000), static_cast<long>(timeout.count() % 1000) * 1000000};
  return std::max(sigtimedwait(&set, nullptr, &ts), 0);
}

// While the model loads (seconds to minutes for a large one), a SIGTERM or SIGINT ends the
// process as it would without the mask: nothing is served or written yet. Blocked, the signal
// only took effect once the load had finished, and the server then started just to drain.
class SignalsEndTheLoad {
 public:
  explicit SignalsEndTheLoad(const sigset_t& set) : set_(set), thread_([this] { watch(); }) {}
  ~SignalsEndTheLoad() {
    loaded_ = true;
    thread_.join();
  }
  SignalsEndTheLoad(const SignalsEndTheLoad&) = delete;
  SignalsEndTheLoad& operator=(const SignalsEndTheLoad&) = delete;

 private:
  void watch() {
    while (!loaded_) {
      const int sig = wait_for_signal(set_, std::chrono::milliseconds(50));
      if (sig == 0) continue;
      log_line(LogLevel::kInfo, fmt::format("frugal serve: {} during the model load, stopping", strsignal(sig)));
      std::fflush(stderr);
      // Die of the signal itself, so a supervisor sees what ended the process.
      signal(sig, SIG_DFL);
      sigset_t one;
      sigemptyset(&one);
      sigaddset(&one, sig);
      pthread_sigmask(SIG_UNBLOCK, &one, nullptr);
      raise(sig);
    }
  }

  const sigset_t set_;
  std::atomic<bool> loaded_ = false;
  std::thread thread_;
};

int run() {
  ServeFlags f = flags();
  if (f.port < 0 || f.port > 65535) fail("--port must be between 0 and 65535 (got {})", f.port);
  if (f.parallel < 1 || f.parallel > EngineOptions::kMaxParallel)
    fail("--parallel must be between 1 and {} (got {})", EngineOptions::kMaxParallel, f.parallel);
  // A waiting request holds an HTTP thread: 40,000 threads ran out of stacks (vm.max_map_count),
  // which aborted the process after "listening" was printed (when the pool was made at once).
  if (f.queue < 0 || f.queue > 4096) fail("--queue must be between 0 and 4096 (got {})", f.queue);
  if (f.kv_blocks && *f.kv_blocks < 1) fail("--kv-blocks must be 1 or more (got {})", *f.kv_blocks);
  if (f.kv_capacity && *f.kv_capacity < 1) fail("--kv-capacity must be 1 or more (got {})", *f.kv_capacity);
  if (f.kv_blocks && f.kv_capacity) fail("give --kv-blocks or --kv-capacity, not both");
  // The vector attention kernels read 8 (AVX2) or 16 (AVX-512) keys of one block at a time;
  // other sizes silently ran the scalar reference, 14 to 70 times slower.
  if (f.kv_block_size < 16 || f.kv_block_size > 4096 || f.kv_block_size % 16 != 0)
    fail("--kv-block-size must be a multiple of 16 from 16 to 4096 (got {}): the attention kernels read 16 keys "
         "of a block at a time",
         f.kv_block_size);
  if (f.batch_size < 0) fail("--batch-size must be 1 or more (got {})", f.batch_size);
  if (f.timeout < 1) fail("--timeout must be 1 second or more (got {})", f.timeout);
  if (f.keep_alive < 0) fail("--keep-alive must be 0 or more seconds (got {})", f.keep_alive);
  if (f.max_body < 1) fail("--max-body must be 1 byte or more (got {})", f.max_body);
  if (f.max_n < 1 || f.max_n > 1024) fail("--max-n must be between 1 and 1024 (got {})", f.max_n);
  if (f.drain_timeout < 0) fail("--drain-timeout must be 0 or more seconds (got {})", f.drain_timeout);
  if (f.http_threads < 0 || f.http_threads > 8192)
    fail("--http-threads must be 0 (automatic) or between 1 and 8192 (got {})", f.http_threads);
  if (!f.api_key.empty() && !f.api_key_file.empty()) fail("give --api-key or --api-key-file, not both");
  if (!f.api_key_file.empty()) {
    f.api_key = read_text_arg(f.api_key_file, "API key file");
    while (!f.api_key.empty() && (f.api_key.back() == '\n' || f.api_key.back() == '\r')) f.api_key.pop_back();
    if (f.api_key.empty()) fail("API key file {} is empty", f.api_key_file);
  }
  if (f.batch_size == 0) f.batch_size = std::max<int64_t>(128, f.parallel);
  if (f.batch_size < f.parallel)
    fail("--batch-size {} cannot hold a decode row for each of the {} --parallel sequences", f.batch_size, f.parallel);

  EngineOptions eo = engine_options(f.model);
  eo.tokenizer_optional = true;  // a model without a tokenizer serves token-id completions
  eo.kv_block_size = f.kv_block_size;
  eo.kv_capacity = f.kv_blocks ? *f.kv_blocks * f.kv_block_size : f.kv_capacity.value_or(0);
  eo.kv_contexts = f.parallel;
  eo.max_batch_rows = f.batch_size;
  set_log_level(f.model.verbose ? LogLevel::kDebug : LogLevel::kWarn);
  std::optional<ChatTemplate> chosen = chosen_chat_template(f.chat_template);
  const std::string model_id = f.alias.empty() ? model_name(f.model.model) : f.alias;
  // Read before the model loads, so a bad one fails at once.
  const std::vector<NamedAdapter> adapters = read_lora_modules(f.lora_modules, model_id);

  // Signals go to the main thread only: block them before any other thread exists.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);  // a client that hung up must not kill the server mid-write

  const auto t0 = std::chrono::steady_clock::now();
  std::unique_ptr<Engine> engine;
  std::string template_note;
  std::optional<ChatTemplate> chat_template;
  {
    const SignalsEndTheLoad watch(signals);
    engine = load_engine(f.model, eo);
    attach_lora_modules(engine->model(), adapters);
    // Commit the KV cache now: a server takes its memory at startup, not under load. Under a
    // container's memory limit too much of it is a kill without a word: checked first.
    check_memory_limit(engine->cache().bytes(),
                       fmt::format("the KV cache ({} positions)", engine->cache().capacity_tokens()),
                       "--parallel, --ctx or --kv-blocks, or use --kv-type q8_0", cgroup_memory_limit(),
                       anonymous_rss_bytes(), file_rss_bytes());
    engine->cache().prefault();
    chat_template = choose_template(f, std::move(chosen), *engine, template_note);
  }

  SchedulerOptions so;
  so.max_sequences = f.parallel;
  so.max_queued = f.queue;
  so.prefix_cache = !f.no_prefix_cache;
  so.adapters = static_cast<int32_t>(adapters.size());
  Scheduler scheduler(*engine, so);
  server::RequestBuilder builder(engine->has_tokenizer() ? &engine->tokenizer() : nullptr, chat_template,
                                 engine->n_ctx(), engine->config().n_vocab);

  server::ServerOptions opts;
  opts.host = f.host;
  opts.port = f.port;
  opts.api_key = f.api_key;
  opts.model_id = model_id;
  for (const NamedAdapter& a : adapters) opts.adapters.push_back({a.name, a.folder});
  opts.max_body_bytes = static_cast<size_t>(f.max_body);
  opts.timeout_seconds = f.timeout;
  opts.keep_alive_seconds = f.keep_alive;
  opts.http_threads = f.http_threads;
  opts.limits.max_n = f.max_n;
  server::HttpServer http(scheduler, builder, opts);
  const int port = http.bind();

  std::thread engine_thread([&] { scheduler.run(); });
  std::thread http_thread([&] { http.serve(); });
  const KvCache& kv = engine->cache();
  const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  log_line(LogLevel::kInfo,
           fmt::format("frugal serve: listening on http://{}:{} serving '{}' ({}); context {}, {} parallel, queue {}, "
                       "KV {} blocks x {} positions ({}, {:.1f} MB), prefix cache {}, batch {} rows, chat template "
                       "{}, {} threads{}, API key {}{}; loaded in {:.1f} s; chat page: http://{}:{}/",
                       f.host, port, opts.model_id, f.model.model, engine->n_ctx(), f.parallel, f.queue, kv.n_blocks(),
                       kv.block_size(), dtype_name(kv.dtype()), static_cast<double>(kv.bytes()) / 1e6,
                       so.prefix_cache ? "on" : "off", f.batch_size, template_note, engine->pool().size(),
                       f.model.w8a8 ? ", W8A8 (int8 activations per token)" : "", f.api_key.empty() ? "off" : "on",
                       adapters_note(adapters), load_s, f.host, port));
  std::fflush(stderr);

  while (wait_for_signal(signals, std::chrono::milliseconds(1000)) == 0) {
  }
  // In flight: what the engine's last published stats hold, and the handlers still at work. A
  // request submitted just before the signal is in the handlers only (the stats come after the
  // engine's next step): counted by the stats alone, it skipped the drain and the abort and ran
  // to its end, --drain-timeout or not.
  const auto in_flight = [&] {
    return std::max<int64_t>(scheduler.stats().active_requests, http.requests_in_flight());
  };
  log_line(LogLevel::kInfo, fmt::format("frugal serve: draining {} requests (up to {} s; signal again to stop now)",
                                        in_flight(), f.drain_timeout));
  http.begin_shutdown();
  scheduler.stop_accepting();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(f.drain_timeout);
  bool again = false;
  while (in_flight() > 0 && std::chrono::steady_clock::now() < deadline && !again)
    again = wait_for_signal(signals, std::chrono::milliseconds(50)) != 0;
  if (in_flight() > 0) {
    log_line(LogLevel::kInfo, fmt::format("frugal serve: ending {} requests", in_flight()));
    scheduler.abort_all();
  }
  // The handlers write their last events, then the listener stops and joins them.
  const auto grace = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (in_flight() > 0 && std::chrono::steady_clock::now() < grace && !again)
    again = wait_for_signal(signals, std::chrono::milliseconds(10)) != 0;
  // A response still being written goes to a client that stopped reading (or reads slowly):
  // its connection is shut down, or the join below waited up to twice --timeout.
  if (in_flight() > 0) {
    log_line(LogLevel::kInfo, fmt::format("frugal serve: closing {} connections still being written", in_flight()));
    http.close_connections();
  }
  http.stop();
  http_thread.join();
  scheduler.shutdown();
  engine_thread.join();
  log_line(LogLevel::kInfo, "frugal serve: stopped");
  return 0;
}

[[maybe_unused]] const bool registered = register_command({"serve", 30, setup, run});

}  // namespace
}  // namespace frugal::cli
