// Chat templates: a conversation to the prompt text a chat model was trained on.
//
// Models ship their format as a Jinja template ("chat_template" in tokenizer_config.json,
// "tokenizer.chat_template" in GGUF). frugal does not run Jinja: like llama.cpp, it recognises
// the template's FAMILY from the template text and renders that family with C++ code. Each
// family reproduces, whitespace for whitespace, what its canonical templates produce under
// Hugging Face's apply_chat_template for system/user/assistant (and, where the family has one,
// tool) messages; tests/chat checks this against the real templates rendered by Python's jinja2.
// A template of a known family that differs from the canonical ones in a detail is rendered the
// family's way; a template of no known family is an error, and --chat-template NAME chooses.
//
// The text contains the BOS/EOS strings where the template writes bos_token/eos_token (Llama 3
// and Gemma start with BOS; Llama 2 writes one before every turn). Tokenize it with special
// tokens parsed, and without adding another BOS when the text already starts with it.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace frugal {

struct ChatMessage {
  std::string role;  // "system", "user", "assistant", "tool" (families say which they take)
  std::string content;
};

struct ChatFamily;

// What detection reads from a template's text besides its family. by_name() gives the
// defaults, which match the family's canonical template.
struct ChatTemplateParams {
  // System prompt the template writes when the conversation has none (Qwen2, Qwen2.5, SmolLM2,
  // DeepSeek Coder); empty: none.
  std::string default_system;
  // ChatML templates that begin with {{ bos_token }} (Hermes 2 Pro on Llama 3).
  bool bos_prefix = false;
  // Early Llama 3 releases end with the assistant header whatever add_generation_prompt says.
  bool always_generation_prompt = false;
  // llama2-sys-strip: BOS before every [INST] (Llama-2-chat) or only at the start (Vigogne).
  bool bos_before_every_turn = true;
  // Phi-3.5 skips system messages with empty content; Phi-3 writes them.
  bool skip_empty_system = false;
  // DeepSeek: later R1 templates open "<think>\n" in the generation prompt and join several
  // system messages with a blank line (R1-Distill keeps only the last).
  bool think_prompt = false;
  bool join_system_messages = false;
  // Llama 3.1/3.2 write "Today Date: ..." in the system header: a fixed date from the template
  // (3.1, 3.3), or the current day (3.2, via strftime_now).
  std::string date = "26 Jul 2024";
  bool date_is_today = false;
  // Qwen3 has an enable_thinking switch.
  bool has_thinking_switch = false;
};

// What to feed after a conversation grew: see ChatTemplate::render_delta.
struct ChatDelta {
  // True: `text` continues the previous rendering (keep the KV cache, feed `text`). False: the
  // previous rendering is not a prefix of the new one; `text` is the whole new rendering and
  // the cache must be cleared first.
  bool continues = false;
  std::string text;
};

// Whether a --chat-template value is Jinja text (it holds "{%" or "{{") rather than a family name.
inline bool is_jinja_template(std::string_view text) {
  return text.find("{%") != std::string_view::npos || text.find("{{") != std::string_view::npos;
}

class ChatTemplate {
 public:
  // The family of a Jinja template text (or of a bare family name, as llama.cpp accepts).
  // Throws frugal::Error naming the template (its first 80 characters) and listing the
  // supported names when no family matches; the message starts with `source` when one is
  // given (the model the template came from).
  static ChatTemplate detect(std::string_view template_text, std::string_view source = {});
  // A family by name (--chat-template NAME). Throws frugal::Error listing the valid names.
  static ChatTemplate by_name(std::string_view name);
  // Every family name, in detection order.
  static std::vector<std::string_view> names();

  std::string_view name() const;
  std::string_view models() const;  // which models use the family, for messages: "Llama 3.1, 3.2, 3.3"
  const ChatTemplateParams& params() const { return params_; }

  // Qwen3's enable_thinking=false: the generation prompt carries an empty <think></think> block
  // so the model answers directly. Families without the switch ignore it.
  void set_enable_thinking(bool enable) { enable_thinking_ = enable; }
  // The day templates that print the current date should print ("15 Jan 2025"); default: the
  // local date at render time.
  void set_today(std::string date) { today_ = std::move(date); }

  // The prompt text for `messages`; add_generation_prompt appends the header that makes the
  // model answer as the assistant. Throws frugal::Error for a role the family does not have, or
  // a system message anywhere but first in a family that takes it only there.
  std::string render(const std::vector<ChatMessage>& messages, bool add_generation_prompt, const std::string& bos,
                     const std::string& eos) const;

  // Multi-turn chat that keeps the conversation in the KV cache (what llama.cpp's chat example
  // does). `previous` is the conversation the cache holds: the messages of the last prompt
  // (rendered with the generation prompt) followed by the assistant's reply, or {} when nothing
  // was fed yet. The delta is render(current, add_generation_prompt) minus
  // render(previous, no generation prompt), when the latter is a prefix of the former and the
  // last prompt still renders as the start of it. Families whose rendering of a turn depends on
  // later turns break this (Qwen3 drops reasoning from history, Mistral v3 moves the system
  // prompt to the last user turn, Phi-3 closes a text without generation prompt with EOS):
  // then continues == false and the caller clears the cache and feeds the whole text.
  ChatDelta render_delta(const std::vector<ChatMessage>& previous, const std::vector<ChatMessage>& current,
                         bool add_generation_prompt, const std::string& bos, const std::string& eos) const;

 private:
  ChatTemplate(const ChatFamily* family, ChatTemplateParams params) : family_(family), params_(std::move(params)) {}

  const ChatFamily* family_;
  ChatTemplateParams params_;
  bool enable_thinking_ = true;
  std::string today_;  // empty: the current local date
};

// The Stanford Alpaca prompt for one instruction, with its "### Response:" header: what the
// "alpaca" family renders for a lone user message (the preamble and the instruction), or, with
// an input, the variant with "### Input:" that finetune trains such records on.
std::string alpaca_prompt(const std::string& instruction, const std::string& input);

}  // namespace frugal
