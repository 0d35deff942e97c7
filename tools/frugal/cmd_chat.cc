// frugal chat: a conversation with a chat model, one user message per line of stdin (a
// terminal or a pipe; \n in a line is a line break, as in llama-cli). "/exit" or end of input
// ends it, "/reset" starts over. Replies stream to stdout, each followed by a newline; prompts
// and notes go to stderr, and with -v each reply's timings (a chat is read, so they are not
// printed by default). Ctrl-C stops the reply being written and returns to the prompt, as in
// llama-cli; at the prompt, or pressed twice, it ends the chat.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <iostream>
#include <string>

#include "chat/chat_template.h"
#include "core/check.h"
#include "core/log.h"
#include "runtime/chat_session.h"
#include "tools/frugal/commands.h"
#include "tools/frugal/common_options.h"

namespace frugal::cli {
namespace {

struct ChatFlags {
  ModelFlags model;
  SamplingFlags sampling;
  int64_t n_predict = -1;
  ChatTemplateFlags chat_template;
  std::string system;
  bool no_thinking = false;
  bool escape = true;
};

ChatFlags& flags() {
  static ChatFlags f;
  return f;
}

std::atomic<bool> g_replying{false};
std::atomic<bool> g_stop_reply{false};

// Async-signal-safe: only atomics, sigaction and raise.
void on_interrupt(int sig) {
  if (g_replying.load() && !g_stop_reply.exchange(true)) return;  // the reply stops at its next piece
  struct sigaction action = {};
  action.sa_handler = SIG_DFL;
  sigemptyset(&action.sa_mask);
  ::sigaction(sig, &action, nullptr);
  ::raise(sig);
}

CLI::App* setup(CLI::App& app) {
  ChatFlags& f = flags();
  CLI::App* sub = app.add_subcommand("chat", "Chat with a model: one message per line on stdin, replies on stdout");
  add_model_flags(*sub, f.model);
  sub->add_option("-n,--n-predict", f.n_predict, "Tokens per reply at most (-1: until end of turn or a full context)")
      ->capture_default_str();
  add_sampling_flags(*sub, f.sampling);
  add_chat_template_flags(*sub, f.chat_template);
  sub->add_option("--system", f.system, "System message");
  add_escape_flag(*sub, f.escape, "--system and in each line read, so a message of several lines is typed with \\n");
  sub->add_flag("--no-thinking", f.no_thinking,
                "Ask for replies without a reasoning block (Qwen3's enable_thinking=false; an error for templates "
                "without that switch)");
  return sub;
}

std::string template_names() {
  std::string out;
  for (const auto name : ChatTemplate::names()) {
    if (!out.empty()) out += ", ";
    out += name;
  }
  return out;
}

// `chosen`: the flags' choice, read before the model loads so that a bad one fails at once.
ChatTemplate choose_template(const ChatFlags& f, std::optional<ChatTemplate> chosen, const Engine& engine) {
  if (chosen) return std::move(*chosen);
  if (engine.chat_template().empty()) {
    // As llama.cpp (and `frugal serve`): a model without a template gets ChatML, said once.
    log_warn("{} has no chat template: using chatml (choose another with --chat-template NAME, one of {})",
             f.model.model, template_names());
    return ChatTemplate::by_name("chatml");
  }
  return ChatTemplate::detect(engine.chat_template(), f.model.model);
}

int run() {
  const ChatFlags& f = flags();
  // 0 is generate's "evaluate the prompt only"; in a chat it made every reply silently empty.
  if (f.n_predict == 0 || f.n_predict < -1)
    fail("-n/--n-predict must be -1 (until the end of the turn or a full context) or 1 or more tokens per reply "
         "(got {})",
         f.n_predict);
  std::optional<ChatTemplate> chosen = chosen_chat_template(f.chat_template);
  auto engine = load_engine(f.model);
  GenerateOptions o;
  o.sampling = sampling_params(f.sampling, static_cast<int32_t>(engine->config().n_vocab));
  o.max_tokens = f.n_predict;
  ChatTemplate chat_template = choose_template(f, std::move(chosen), *engine);
  if (f.no_thinking) {
    if (!chat_template.params().has_thinking_switch)
      fail("--no-thinking: the '{}' chat template has no thinking switch (Qwen3's enable_thinking)",
           chat_template.name());
    chat_template.set_enable_thinking(false);
  }
  ChatSession session(*engine, std::move(chat_template), f.escape ? process_escapes(f.system) : f.system);
  session.set_on_dropped([&](int64_t dropped) {
    std::fflush(stdout);
    log_line(LogLevel::kInfo, fmt::format("note: the conversation outgrew the context of {} tokens: dropped the {} "
                                          "oldest messages and fed the rest again",
                                          engine->n_ctx(), dropped));
  });

  const bool interactive = isatty(STDIN_FILENO);
  if (interactive)
    log_line(LogLevel::kInfo, fmt::format("chatting with {} ({} template); /reset starts over, /exit or Ctrl-D ends",
                                          f.model.model, session.chat_template().name()));
  GenerateCallbacks callbacks;
  callbacks.on_text = [](std::string_view text) {
    if (g_stop_reply.load()) return false;
    write_stdout(text);
    return true;
  };
  struct sigaction action = {};
  action.sa_handler = on_interrupt;
  // Restarted, not failed with EINTR: a reply's write blocked on a slow terminal or a full pipe
  // when Ctrl-C came ended the chat ("Interrupted system call"). Nothing waits for the signal to
  // break a read: at the prompt the handler ends the process.
  action.sa_flags = SA_RESTART;
  sigemptyset(&action.sa_mask);
  ::sigaction(SIGINT, &action, nullptr);
  int status = 0;
  std::string line;
  while (true) {
    if (interactive) std::fputs("> ", stderr);
    if (!std::getline(std::cin, line)) break;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line == "/exit") break;
    if (line == "/reset") {
      session.reset();
      if (interactive) log_line(LogLevel::kInfo, "(conversation cleared)");
      continue;
    }
    if (line.empty()) continue;
    // One line is one message, so a message of several lines is written with \n (as in llama-cli).
    if (f.escape) line = process_escapes(line);
    try {
      g_stop_reply = false;
      g_replying = true;
      struct Replying {
        ~Replying() { g_replying = false; }
      } replying;
      const ChatTurn turn = session.send(line, o, callbacks);
      g_replying = false;
      std::fputc('\n', stdout);
      std::fflush(stdout);
      // What was shown stays in the conversation, as llama-cli keeps it.
      if (turn.generation.finish_reason == FinishReason::kCancelled)
        log_line(LogLevel::kInfo, "(reply stopped; Ctrl-C at the prompt or Ctrl-D ends the chat)");
      // A reply cut short is said, as generate says it: with -n, or without, it looks finished.
      if (turn.generation.finish_reason == FinishReason::kContextFull)
        log_line(LogLevel::kInfo,
                 fmt::format("note: the reply stopped after {} tokens, at the end of the context of {} tokens (-c "
                             "gives a larger one)",
                             turn.generation.tokens.size(), engine->n_ctx()));
      if (f.model.verbose) {
        print_timings(turn.generation.timings);
        log_debug("finished: {}", finish_reason_name(turn.generation.finish_reason));
      }
    } catch (const Error& e) {
      // One bad message (too long for the context) does not end the conversation.
      std::fflush(stdout);
      std::fprintf(stderr, "frugal: error: %s\n", e.what());
      status = 1;
      if (stdout_failed()) break;  // replies can no longer be shown: the chat ends
    }
  }
  if (interactive) std::fputc('\n', stderr);
  return status;
}

[[maybe_unused]] const bool registered = register_command({"chat", 20, setup, run});

}  // namespace
}  // namespace frugal::cli
