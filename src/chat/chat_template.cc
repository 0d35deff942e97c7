#include "chat/chat_template.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <array>

#include "chat/chat_family.h"
#include "chat/chat_text.h"
#include "core/check.h"

namespace frugal {
namespace {

// Detection order: the first family whose predicate matches the template wins, so the more
// specific formats come before the ones they resemble (Phi-4 and Qwen before plain ChatML,
// Llama 3.1 before Llama 3, Mistral's official templates before the Llama 2 family, DeepSeek
// Coder before Alpaca, whose headers it shares).
// Adding a family: its predicate, parameters and renderer in a chat_families_*.cc file, and a
// row here.
const std::array<const ChatFamily*, 26>& families() {
  static const std::array<const ChatFamily*, 26> list = {
      &phi4_family(),
      &qwen3_family(),
      &qwen25_family(),
      &chatml_family(),
      &llama31_family(),
      &llama3_family(),
      &mistral_v7_family(),
      &mistral_v1_family(),
      &mistral_v3_tekken_family(),
      &mistral_v3_family(),
      &llama2_sys_strip_family(),
      &llama2_sys_bos_family(),
      &llama2_sys_family(),
      &llama2_family(),
      &phi3_family(),
      &zephyr_family(),
      &gemma_family(),
      &monarch_family(),
      &openchat_family(),
      &vicuna_orca_family(),
      &vicuna_family(),
      &deepseek_family(),
      &command_r_family(),
      &deepseek2_family(),
      &deepseek3_family(),
      &alpaca_family(),
  };
  return list;
}

// For messages: alphabetical, easier to scan than detection order.
std::string name_list() {
  std::vector<std::string_view> names = ChatTemplate::names();
  std::sort(names.begin(), names.end());
  return fmt::format("{}", fmt::join(names, ", "));
}

}  // namespace

std::vector<std::string_view> ChatTemplate::names() {
  std::vector<std::string_view> names;
  names.reserve(families().size());
  for (const ChatFamily* family : families()) names.push_back(family->name);
  return names;
}

ChatTemplate ChatTemplate::detect(std::string_view template_text, std::string_view source) {
  const std::string from = source.empty() ? std::string() : fmt::format("{}: ", source);
  if (py_strip(template_text).empty()) {
    fail("{}the model has no chat template; choose one with --chat-template NAME (one of: {})", from, name_list());
  }
  // A bare family name stands for that family, as in llama.cpp.
  for (const ChatFamily* family : families()) {
    if (family->name == template_text) return ChatTemplate(family, ChatTemplateParams{});
  }
  const TemplateText text(template_text);
  for (const ChatFamily* family : families()) {
    if (!family->matches(text)) continue;
    ChatTemplateParams params;
    if (family->read_params != nullptr) family->read_params(text, params);
    return ChatTemplate(family, std::move(params));
  }
  fail(
      "{}unsupported chat template \"{}\": it is none of the families frugal renders ({}); choose one with "
      "--chat-template NAME",
      from, template_excerpt(template_text, 80), name_list());
}

ChatTemplate ChatTemplate::by_name(std::string_view name) {
  for (const ChatFamily* family : families()) {
    if (family->name == name) return ChatTemplate(family, ChatTemplateParams{});
  }
  fail("unknown chat template '{}'; valid names: {}", name, name_list());
}

std::string_view ChatTemplate::name() const {
  return family_->name;
}
std::string_view ChatTemplate::models() const {
  return family_->models;
}

std::string ChatTemplate::render(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                                 const std::string& bos, const std::string& eos) const {
  const std::string today = !today_.empty() ? today_ : params_.date_is_today ? today_date_string() : std::string();
  const ChatRender request{messages, add_generation_prompt, bos, eos, params_, enable_thinking_, today};
  return family_->render(request);
}

ChatDelta ChatTemplate::render_delta(const std::vector<ChatMessage>& previous, const std::vector<ChatMessage>& current,
                                     bool add_generation_prompt, const std::string& bos, const std::string& eos) const {
  std::string text = render(current, add_generation_prompt, bos, eos);
  // Nothing fed yet: everything continues the (empty) cache, including a leading BOS that
  // render({}) may already write.
  if (previous.empty()) return {true, std::move(text)};
  const std::string fed = render(previous, false, bos, eos);
  // The cache holds the last prompt (previous up to its trailing assistant reply, rendered with
  // the generation prompt) and the reply after it: that prompt must still be how the template
  // renders the start of the history.
  size_t prompt_size = previous.size();
  while (prompt_size > 0 && previous[prompt_size - 1].role == "assistant") --prompt_size;
  if (prompt_size > 0 && prompt_size < previous.size()) {
    const std::vector<ChatMessage> prompt(previous.begin(), previous.begin() + static_cast<ptrdiff_t>(prompt_size));
    if (!fed.starts_with(render(prompt, true, bos, eos))) return {false, std::move(text)};
  }
  if (!text.starts_with(fed)) return {false, std::move(text)};
  return {true, text.substr(fed.size())};
}

}  // namespace frugal
