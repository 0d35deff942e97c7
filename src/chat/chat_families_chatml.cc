// The <|im_start|> families: plain ChatML (OpenHermes, Qwen2, SmolLM2, Hermes 2 Pro), Qwen2.5
// (tool results folded into user turns), Qwen3 (reasoning blocks) and Phi-4 (<|im_sep|>).
#include <string>

#include "chat/chat_family.h"
#include "chat/chat_text.h"

namespace frugal {
namespace {

// The system prompt a ChatML template writes when the conversation has none: a literal
// '<|im_start|>system\n...<|im_end|>' whose body is plain text, not an expression
// (Qwen2: "You are a helpful assistant.", Qwen2.5: "You are Qwen, created by Alibaba Cloud...").
std::string read_default_system(std::string_view text) {
  static constexpr std::string_view kTurn = "<|im_start|>system";
  static constexpr std::string_view kOpen = "<|im_start|>system\n";
  static constexpr std::string_view kClose = "<|im_end|>";
  for (size_t at = text.find(kTurn); at != std::string_view::npos; at = text.find(kTurn, at + 1)) {
    // The string literal the turn is written in starts at the nearest quote before it.
    const size_t opening = text.find_last_of("'\"", at);
    if (opening == std::string_view::npos) continue;
    const std::optional<std::string> literal = read_jinja_string(text, opening);
    if (!literal) continue;
    const size_t open = literal->find(kOpen);
    if (open == std::string::npos) continue;
    const size_t body = open + kOpen.size();
    // The turn must end in the same literal; otherwise its body is an expression.
    const size_t close = literal->find(kClose, body);
    if (close != std::string::npos && close > body) return literal->substr(body, close - body);
  }
  return {};
}

void write_turn(std::string& out, std::string_view role, std::string_view content) {
  out += "<|im_start|>";
  out += role;
  out += '\n';
  out += content;
  out += "<|im_end|>\n";
}

// Qwen: consecutive tool results become one user turn of <tool_response> blocks.
void write_tool_response(std::string& out, const std::vector<ChatMessage>& messages, size_t i) {
  if (i == 0 || messages[i - 1].role != "tool") out += "<|im_start|>user";
  out += "\n<tool_response>\n";
  out += messages[i].content;
  out += "\n</tool_response>";
  if (i + 1 == messages.size() || messages[i + 1].role != "tool") out += "<|im_end|>\n";
}

// ---- chatml ----------------------------------------------------------------------------------

bool chatml_matches(const TemplateText& t) {
  // <think> templates (QwQ, Qwen3 variants) and SmolVLM's <|im_start|>-as-BOS format are not
  // plain ChatML.
  return t.has("<|im_start|>") && !t.has("<think>") && !t.has("<end_of_utterance>") && !t.has("<|im_sep|>");
}

void chatml_read_params(const TemplateText& t, ChatTemplateParams& p) {
  p.default_system = read_default_system(t.raw());
  p.bos_prefix = t.code_starts_with("{{bos_token}}") || t.code_starts_with("{{-bos_token}}");
}

std::string chatml_render(const ChatRender& r) {
  require_roles(r, "chatml", {"system", "user", "assistant", "tool"});
  std::string out = r.params.bos_prefix ? r.bos : std::string();
  const auto& messages = r.messages;
  if (!r.params.default_system.empty() && !messages.empty() && messages[0].role != "system") {
    write_turn(out, "system", r.params.default_system);
  }
  for (const ChatMessage& m : messages) write_turn(out, m.role, m.content);
  if (r.add_generation_prompt) out += "<|im_start|>assistant\n";
  return out;
}

// ---- qwen2.5 ---------------------------------------------------------------------------------

bool qwen25_matches(const TemplateText& t) {
  return t.has("<|im_start|>") && t.has("<tool_response>") && !t.has("<think>");
}

void qwen25_read_params(const TemplateText& t, ChatTemplateParams& p) {
  p.default_system = read_default_system(t.raw());
}

std::string qwen25_render(const ChatRender& r) {
  require_roles(r, "qwen2.5", {"system", "user", "assistant", "tool"});
  const auto& messages = r.messages;
  std::string out;
  if (!messages.empty() && messages[0].role == "system") {
    write_turn(out, "system", messages[0].content);
  } else if (!messages.empty() && !r.params.default_system.empty()) {
    write_turn(out, "system", r.params.default_system);
  }
  for (size_t i = 0; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    if (m.role == "tool") {
      write_tool_response(out, messages, i);
    } else if (m.role != "system" || i > 0) {
      write_turn(out, m.role, m.content);
    }
  }
  if (r.add_generation_prompt) out += "<|im_start|>assistant\n";
  return out;
}

// ---- qwen3 -----------------------------------------------------------------------------------

bool qwen3_matches(const TemplateText& t) {
  return t.has("<|im_start|>") && t.has("</think>") && t.has("last_query_index");
}

void qwen3_read_params(const TemplateText& t, ChatTemplateParams& p) {
  p.has_thinking_switch = t.has("enable_thinking");
}

std::string qwen3_render(const ChatRender& r) {
  require_roles(r, "qwen3", {"system", "user", "assistant", "tool"});
  const auto& messages = r.messages;
  std::string out;
  if (!messages.empty() && messages[0].role == "system") write_turn(out, "system", messages[0].content);

  // Assistant turns after the last real user query (not a tool response passed as a user
  // message) keep their reasoning; earlier ones lose it.
  size_t last_query = messages.empty() ? 0 : messages.size() - 1;
  for (size_t i = messages.size(); i-- > 0;) {
    const std::string& c = messages[i].content;
    if (messages[i].role == "user" && !(c.starts_with("<tool_response>") && c.ends_with("</tool_response>"))) {
      last_query = i;
      break;
    }
  }

  for (size_t i = 0; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    if (m.role == "user" || (m.role == "system" && i > 0)) {
      write_turn(out, m.role, m.content);
    } else if (m.role == "assistant") {
      std::string_view content = m.content;
      std::string_view reasoning;
      if (content.find("</think>") != std::string_view::npos) {
        const std::string_view before = content.substr(0, content.find("</think>"));
        reasoning = lstrip_char(after_last(rstrip_char(before, '\n'), "<think>"), '\n');
        content = lstrip_char(after_last(content, "</think>"), '\n');
      }
      out += "<|im_start|>assistant\n";
      if (i > last_query && (i + 1 == messages.size() || !reasoning.empty())) {
        out += "<think>\n";
        out += strip_char(reasoning, '\n');
        out += "\n</think>\n\n";
        out += lstrip_char(content, '\n');
      } else {
        out += content;
      }
      out += "<|im_end|>\n";
    } else if (m.role == "tool") {
      write_tool_response(out, messages, i);
    }
  }
  if (r.add_generation_prompt) {
    out += "<|im_start|>assistant\n";
    if (!r.enable_thinking) out += "<think>\n\n</think>\n\n";
  }
  return out;
}

// ---- phi4 ------------------------------------------------------------------------------------

bool phi4_matches(const TemplateText& t) {
  return t.has("<|im_start|>") && t.has("<|im_sep|>");
}

// Phi-4's template opens the assistant turn after every user message and has no
// add_generation_prompt switch.
std::string phi4_render(const ChatRender& r) {
  require_roles(r, "phi4", {"system", "user", "assistant"});
  std::string out;
  for (const ChatMessage& m : r.messages) {
    if (m.role == "assistant") {
      out += m.content + "<|im_end|>";
    } else {
      out += "<|im_start|>" + m.role + "<|im_sep|>" + m.content + "<|im_end|>";
      if (m.role == "user") out += "<|im_start|>assistant<|im_sep|>";
    }
  }
  return out;
}

}  // namespace

const ChatFamily& chatml_family() {
  static constexpr ChatFamily kFamily = {"chatml", "OpenHermes, Qwen2, SmolLM2, Hermes 2 Pro", chatml_matches,
                                         chatml_read_params, chatml_render};
  return kFamily;
}
const ChatFamily& qwen25_family() {
  static constexpr ChatFamily kFamily = {"qwen2.5", "Qwen2.5", qwen25_matches, qwen25_read_params, qwen25_render};
  return kFamily;
}
const ChatFamily& qwen3_family() {
  static constexpr ChatFamily kFamily = {"qwen3", "Qwen3", qwen3_matches, qwen3_read_params, qwen3_render};
  return kFamily;
}
const ChatFamily& phi4_family() {
  static constexpr ChatFamily kFamily = {"phi4", "Phi-4", phi4_matches, nullptr, phi4_render};
  return kFamily;
}

}  // namespace frugal
