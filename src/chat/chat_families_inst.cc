// The [INST] families: Llama 2 and its variants (llama.cpp's names: with or without a <<SYS>>
// block, a BOS before every turn, stripped messages), and Mistral's official v1, v3,
// v3-tekken and v7 templates.
#include <string>

#include "chat/chat_family.h"
#include "chat/chat_text.h"

namespace frugal {
namespace {

// Mistral's official templates (not Llama 2's): v1 writes a space before [INST], v3 has tool
// blocks, v7 a [SYSTEM_PROMPT].
bool mistral_official(const TemplateText& t) {
  return t.has("[INST]") && !t.has("[SYSTEM_PROMPT]") &&
         (t.has("' [INST] ' + system_message") || t.has("[AVAILABLE_TOOLS]"));
}

bool llama2_like(const TemplateText& t) {
  return t.has("[INST]") && !t.has("[SYSTEM_PROMPT]") && !mistral_official(t);
}
bool has_sys_block(const TemplateText& t) {
  return t.has("<<SYS>>");
}
bool strips_messages(const TemplateText& t) {
  return t.has_code(".strip()") || t.has_code("|trim");
}
bool bos_in_history(const TemplateText& t) {
  return t.has_code("bos_token+'[INST]");
}

// ---- llama2 variants -------------------------------------------------------------------------

struct Llama2Style {
  std::string_view name;
  bool strip;                  // content.strip()
  bool bos_before_every_turn;  // bos_token + '[INST] ' (else one BOS at the start)
};

// Meta's Llama-2-chat layout: the system prompt goes in a <<SYS>> block at the start of the
// first message; user turns are [INST] ... [/INST]; assistant turns " content " + EOS.
std::string llama2_sys_render(const ChatRender& r, const Llama2Style& style) {
  require_roles(r, style.name, {"system", "user", "assistant"});
  require_leading_system(r, style.name);
  const auto& messages = r.messages;
  const bool has_system = !messages.empty() && messages[0].role == "system";
  std::string out = style.bos_before_every_turn ? std::string() : r.bos;
  for (size_t i = has_system ? 1 : 0; i < messages.size(); ++i) {
    std::string content;
    if (has_system && i == 1) {
      content += "<<SYS>>\n";
      content += messages[0].content;
      content += "\n<</SYS>>\n\n";
    }
    content += messages[i].content;
    const std::string_view text = style.strip ? py_strip(content) : std::string_view(content);
    if (messages[i].role == "user") {
      if (style.bos_before_every_turn) out += r.bos;
      out += "[INST] ";
      out += text;
      out += " [/INST]";
    } else {
      out += ' ';
      out += text;
      out += ' ';
      out += r.eos;
    }
  }
  return out;
}

bool llama2_sys_strip_matches(const TemplateText& t) {
  return llama2_like(t) && has_sys_block(t) && strips_messages(t);
}
bool llama2_sys_bos_matches(const TemplateText& t) {
  return llama2_like(t) && has_sys_block(t) && bos_in_history(t);
}
bool llama2_sys_matches(const TemplateText& t) {
  return llama2_like(t) && has_sys_block(t);
}

void llama2_sys_strip_read_params(const TemplateText& t, ChatTemplateParams& p) {
  p.bos_before_every_turn = bos_in_history(t);  // Llama-2-chat: yes; Vigogne: only at the start
}

std::string llama2_sys_strip_render(const ChatRender& r) {
  return llama2_sys_render(r, {"llama2-sys-strip", true, r.params.bos_before_every_turn});
}
std::string llama2_sys_bos_render(const ChatRender& r) {
  return llama2_sys_render(r, {"llama2-sys-bos", false, true});
}
std::string llama2_sys_render_plain(const ChatRender& r) {
  return llama2_sys_render(r, {"llama2-sys", false, false});
}

// [INST] without a system block (Mistral-7B-Instruct v0.1/v0.2's first templates). Their Jinja
// raises on a system message; frugal puts it in front of the first user message instead.
bool llama2_matches(const TemplateText& t) {
  return llama2_like(t) && !has_sys_block(t);
}

std::string llama2_render(const ChatRender& r) {
  require_roles(r, "llama2", {"system", "user", "assistant"});
  require_leading_system(r, "llama2");
  const auto& messages = r.messages;
  const bool has_system = !messages.empty() && messages[0].role == "system";
  std::string system = has_system ? messages[0].content + "\n\n" : std::string();
  std::string out = r.bos;
  for (size_t i = has_system ? 1 : 0; i < messages.size(); ++i) {
    if (messages[i].role == "user") {
      out += "[INST] " + system + messages[i].content + " [/INST]";
      system.clear();
    } else {
      out += messages[i].content + r.eos;
    }
  }
  return out;
}

// ---- mistral v1 / v3 / v3-tekken -------------------------------------------------------------

bool mistral_v1_matches(const TemplateText& t) {
  return mistral_official(t) && t.has(" [INST]");
}
bool mistral_v3_tekken_matches(const TemplateText& t) {
  return mistral_official(t) && t.has("\"[INST]\"");
}
bool mistral_v3_matches(const TemplateText& t) {
  return mistral_official(t);
}

// v1: " [INST] system\n\nuser [/INST] assistant</s>", system prompt in the first user turn.
std::string mistral_v1_render(const ChatRender& r) {
  require_roles(r, "mistral-v1", {"system", "user", "assistant"});
  require_leading_system(r, "mistral-v1");
  const auto& messages = r.messages;
  const bool has_system = !messages.empty() && messages[0].role == "system";
  std::string out = r.bos;
  for (size_t i = has_system ? 1 : 0; i < messages.size(); ++i) {
    if (messages[i].role == "user") {
      out += " [INST] ";
      if (has_system && i == 1) out += messages[0].content + "\n\n";
      out += messages[i].content + " [/INST]";
    } else {
      out += " " + messages[i].content + r.eos;
    }
  }
  return out;
}

// v3 and v3-tekken put the system prompt in the LAST user turn, and only when that turn ends
// the conversation (a conversation ending with the assistant's reply shows no system prompt).
std::string mistral_v3_render_impl(const ChatRender& r, std::string_view name, bool tekken) {
  require_roles(r, name, {"system", "user", "assistant"});
  require_leading_system(r, name);
  const auto& messages = r.messages;
  const bool has_system = !messages.empty() && messages[0].role == "system";
  std::string out = r.bos;
  for (size_t i = has_system ? 1 : 0; i < messages.size(); ++i) {
    const std::string& content = messages[i].content;
    if (messages[i].role == "user") {
      out += tekken ? "[INST]" : "[INST] ";
      if (has_system && i + 1 == messages.size()) out += messages[0].content + "\n\n";
      out += content + "[/INST]";
    } else if (tekken) {
      out += content + r.eos;
    } else {
      out += ' ';
      out += py_strip(content);
      out += r.eos;
    }
  }
  return out;
}

std::string mistral_v3_render(const ChatRender& r) {
  return mistral_v3_render_impl(r, "mistral-v3", false);
}
std::string mistral_v3_tekken_render(const ChatRender& r) {
  return mistral_v3_render_impl(r, "mistral-v3-tekken", true);
}

// ---- mistral v7 ------------------------------------------------------------------------------

bool mistral_v7_matches(const TemplateText& t) {
  return t.has("[INST] ") && t.has("[SYSTEM_PROMPT] ");
}

std::string mistral_v7_render(const ChatRender& r) {
  require_roles(r, "mistral-v7", {"system", "user", "assistant"});
  std::string out = r.bos;
  for (const ChatMessage& m : r.messages) {
    if (m.role == "user") {
      out += "[INST] " + m.content + "[/INST]";
    } else if (m.role == "system") {
      out += "[SYSTEM_PROMPT] " + m.content + "[/SYSTEM_PROMPT]";
    } else {
      out += " " + m.content + r.eos;
    }
  }
  return out;
}

}  // namespace

const ChatFamily& llama2_sys_strip_family() {
  static constexpr ChatFamily kFamily = {"llama2-sys-strip", "Llama 2 Chat", llama2_sys_strip_matches,
                                         llama2_sys_strip_read_params, llama2_sys_strip_render};
  return kFamily;
}
const ChatFamily& llama2_sys_bos_family() {
  static constexpr ChatFamily kFamily = {"llama2-sys-bos", "Llama 2 fine-tunes", llama2_sys_bos_matches, nullptr,
                                         llama2_sys_bos_render};
  return kFamily;
}
const ChatFamily& llama2_sys_family() {
  static constexpr ChatFamily kFamily = {"llama2-sys", "Llama 2 fine-tunes", llama2_sys_matches, nullptr,
                                         llama2_sys_render_plain};
  return kFamily;
}
const ChatFamily& llama2_family() {
  static constexpr ChatFamily kFamily = {"llama2", "Mistral 7B Instruct v0.1/v0.2 (first templates)", llama2_matches,
                                         nullptr, llama2_render};
  return kFamily;
}
const ChatFamily& mistral_v1_family() {
  static constexpr ChatFamily kFamily = {"mistral-v1", "Mistral 7B v0.2, Mixtral 8x7B", mistral_v1_matches, nullptr,
                                         mistral_v1_render};
  return kFamily;
}
const ChatFamily& mistral_v3_tekken_family() {
  static constexpr ChatFamily kFamily = {"mistral-v3-tekken", "Mistral Nemo", mistral_v3_tekken_matches, nullptr,
                                         mistral_v3_tekken_render};
  return kFamily;
}
const ChatFamily& mistral_v3_family() {
  static constexpr ChatFamily kFamily = {"mistral-v3", "Mistral 7B v0.3, Mistral Large 2407", mistral_v3_matches,
                                         nullptr, mistral_v3_render};
  return kFamily;
}
const ChatFamily& mistral_v7_family() {
  static constexpr ChatFamily kFamily = {"mistral-v7", "Mistral Large 2411", mistral_v7_matches, nullptr,
                                         mistral_v7_render};
  return kFamily;
}

}  // namespace frugal
