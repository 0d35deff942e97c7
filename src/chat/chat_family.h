// The interface of a chat-template family (internal to src/chat): a detection predicate over
// the template's text, an optional reader of the parameters the text fixes, and a renderer.
// Families live in the chat_families_*.cc files; chat_template.cc lists them in detection order.
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "chat/chat_template.h"

namespace frugal {

// A template's text as the predicates see it: raw, and as "code" with spaces and tabs removed
// and newlines written as the two characters \n, so that an expression matches however the
// template spaces it and whether its string literals hold real newlines or \n escapes.
class TemplateText {
 public:
  explicit TemplateText(std::string_view text);

  std::string_view raw() const { return raw_; }
  bool has(std::string_view needle) const { return raw_.find(needle) != std::string_view::npos; }
  // `needle` written without spaces, newlines as \n: "bos_token+message['role']".
  bool has_code(std::string_view needle) const { return code_.find(needle) != std::string::npos; }
  bool code_starts_with(std::string_view prefix) const { return code_.starts_with(prefix); }

 private:
  std::string_view raw_;
  std::string code_;
};

// The arguments of one rendering.
struct ChatRender {
  const std::vector<ChatMessage>& messages;
  bool add_generation_prompt;
  const std::string& bos;
  const std::string& eos;
  const ChatTemplateParams& params;
  bool enable_thinking;
  std::string_view today;  // the date for params.date_is_today
};

struct ChatFamily {
  std::string_view name;
  std::string_view models;  // which models ship it, for listings
  bool (*matches)(const TemplateText& text);
  void (*read_params)(const TemplateText& text, ChatTemplateParams& params);  // nullptr: defaults
  std::string (*render)(const ChatRender& request);
};

// Throws frugal::Error unless every message's role is one of `roles`.
void require_roles(const ChatRender& request, std::string_view family, std::initializer_list<std::string_view> roles);
// Throws frugal::Error for a system message anywhere but first (templates that take the system
// prompt only from messages[0]).
void require_leading_system(const ChatRender& request, std::string_view family);

// The families, defined in chat_families_*.cc.
const ChatFamily& phi4_family();
const ChatFamily& qwen3_family();
const ChatFamily& qwen25_family();
const ChatFamily& chatml_family();
const ChatFamily& llama31_family();
const ChatFamily& llama3_family();
const ChatFamily& mistral_v7_family();
const ChatFamily& mistral_v1_family();
const ChatFamily& mistral_v3_tekken_family();
const ChatFamily& mistral_v3_family();
const ChatFamily& llama2_sys_strip_family();
const ChatFamily& llama2_sys_bos_family();
const ChatFamily& llama2_sys_family();
const ChatFamily& llama2_family();
const ChatFamily& phi3_family();
const ChatFamily& zephyr_family();
const ChatFamily& gemma_family();
const ChatFamily& monarch_family();
const ChatFamily& openchat_family();
const ChatFamily& vicuna_orca_family();
const ChatFamily& vicuna_family();
const ChatFamily& deepseek_family();
const ChatFamily& command_r_family();
const ChatFamily& deepseek2_family();
const ChatFamily& deepseek3_family();
const ChatFamily& alpaca_family();

}  // namespace frugal
