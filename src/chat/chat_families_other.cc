// The families with a format of their own: Phi-3, Zephyr (TinyLlama chat), Gemma, Vicuna,
// DeepSeek (Coder, V2, V3/R1), Command-R, AlphaMonarch, OpenChat, Alpaca.
#include <string>

#include "chat/chat_family.h"
#include "chat/chat_text.h"

namespace frugal {
namespace {

// ---- phi3 ------------------------------------------------------------------------------------

bool phi3_matches(const TemplateText& t) {
  return t.has("<|assistant|>") && t.has("<|end|>");
}

void phi3_read_params(const TemplateText& t, ChatTemplateParams& p) {
  p.skip_empty_system = t.has_code("'system'andmessage['content']");  // Phi-3.5
}

std::string phi3_render(const ChatRender& r) {
  require_roles(r, "phi3", {"system", "user", "assistant"});
  std::string out;
  for (const ChatMessage& m : r.messages) {
    if (m.role == "system" && m.content.empty() && r.params.skip_empty_system) continue;
    out += "<|" + m.role + "|>\n" + m.content + "<|end|>\n";
  }
  // Without a generation prompt the template closes the text with EOS.
  out += r.add_generation_prompt ? std::string("<|assistant|>\n") : r.eos;
  return out;
}

// ---- zephyr ----------------------------------------------------------------------------------

// HuggingFaceH4/zephyr-7b-beta and TinyLlama-1.1B-Chat-v1.0: every turn ends with EOS.
bool zephyr_matches(const TemplateText& t) {
  return t.has_code("<|user|>\\n'+message['content']+eos_token") ||
         t.has_code("<|user|>\\n'+message['content']+'<|endoftext|>'");
}

std::string zephyr_render(const ChatRender& r) {
  require_roles(r, "zephyr", {"system", "user", "assistant"});
  std::string out;
  for (const ChatMessage& m : r.messages) out += "<|" + m.role + "|>\n" + m.content + r.eos + "\n";
  // The template writes the prompt inside its message loop: never for an empty conversation.
  if (r.add_generation_prompt && !r.messages.empty()) out += "<|assistant|>\n";
  return out;
}

// ---- gemma -----------------------------------------------------------------------------------

// Gemma 1 and 2 templates raise on a system message; Gemma 3's puts it at the start of the
// first user turn, which frugal does for all of them.
bool gemma_matches(const TemplateText& t) {
  return t.has("<start_of_turn>");
}

std::string gemma_render(const ChatRender& r) {
  require_roles(r, "gemma", {"system", "user", "assistant"});
  require_leading_system(r, "gemma");
  const auto& messages = r.messages;
  const bool has_system = !messages.empty() && messages[0].role == "system";
  std::string out = r.bos;
  for (size_t i = has_system ? 1 : 0; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    out += "<start_of_turn>";
    out += m.role == "assistant" ? "model" : m.role;
    out += '\n';
    if (has_system && i == 1) out += messages[0].content + "\n\n";
    out += py_strip(m.content);
    out += "<end_of_turn>\n";
  }
  if (r.add_generation_prompt) out += "<start_of_turn>model\n";
  return out;
}

// ---- vicuna ----------------------------------------------------------------------------------

bool vicuna_matches(const TemplateText& t) {
  return t.has("USER: ") && t.has("ASSISTANT: ");
}
bool vicuna_orca_matches(const TemplateText& t) {
  return vicuna_matches(t) && t.has("SYSTEM: ");
}

std::string vicuna_render_impl(const ChatRender& r, bool orca) {
  require_roles(r, orca ? "vicuna-orca" : "vicuna", {"system", "user", "assistant"});
  std::string out;
  for (const ChatMessage& m : r.messages) {
    if (m.role == "system") {
      out += orca ? "SYSTEM: " + m.content + "\n" : m.content + "\n\n";
    } else if (m.role == "user") {
      out += "USER: " + m.content + "\n";
    } else {
      out += "ASSISTANT: " + m.content + "</s>\n";
    }
  }
  if (r.add_generation_prompt) out += "ASSISTANT:";
  return out;
}

std::string vicuna_render(const ChatRender& r) {
  return vicuna_render_impl(r, false);
}
std::string vicuna_orca_render(const ChatRender& r) {
  return vicuna_render_impl(r, true);
}

// ---- deepseek (Coder) ------------------------------------------------------------------------

bool deepseek_matches(const TemplateText& t) {
  return t.has("### Instruction:") && t.has("<|EOT|>");
}

void deepseek_read_params(const TemplateText& t, ChatTemplateParams& p) {
  // {%- if not ns.found -%}{{'You are an AI programming assistant, ...\n'}}
  const size_t at = t.raw().find("not ns.found");
  if (at == std::string_view::npos) return;
  const size_t open = t.raw().find("{{", at);
  if (open == std::string_view::npos) return;
  const size_t quote = t.raw().find_first_not_of(" -", open + 2);
  if (auto text = read_jinja_string(t.raw(), quote)) p.default_system = *text;
}

std::string deepseek_render(const ChatRender& r) {
  require_roles(r, "deepseek", {"system", "user", "assistant"});
  bool has_system = false;
  for (const ChatMessage& m : r.messages) has_system = has_system || m.role == "system";
  std::string out = r.bos;
  if (!has_system) out += r.params.default_system;
  for (const ChatMessage& m : r.messages) {
    if (m.role == "system") {
      out += m.content;
    } else if (m.role == "user") {
      out += "### Instruction:\n" + m.content + "\n";
    } else {
      out += "### Response:\n" + m.content + "\n<|EOT|>\n";
    }
  }
  if (r.add_generation_prompt) out += "### Response:\n";
  return out;
}

// ---- deepseek2 (V2 Chat) ---------------------------------------------------------------------

bool deepseek2_matches(const TemplateText& t) {
  return t.has_code("'Assistant:'+message['content']+eos_token");
}

std::string deepseek2_render(const ChatRender& r) {
  require_roles(r, "deepseek2", {"system", "user", "assistant"});
  std::string out = r.bos;
  for (const ChatMessage& m : r.messages) {
    if (m.role == "user") {
      out += "User: " + m.content + "\n\n";
    } else if (m.role == "assistant") {
      out += "Assistant: " + m.content + r.eos;
    } else {
      out += m.content + "\n\n";
    }
  }
  if (r.add_generation_prompt) out += "Assistant:";
  return out;
}

// ---- deepseek3 (V3, R1 and its distills) -----------------------------------------------------

constexpr std::string_view kDsUser = "<\uff5cUser\uff5c>";
constexpr std::string_view kDsAssistant = "<\uff5cAssistant\uff5c>";
constexpr std::string_view kDsEnd = "<\uff5cend\u2581of\u2581sentence\uff5c>";

bool deepseek3_matches(const TemplateText& t) {
  // V3.1 and later open assistant turns with </think> in history: a different format.
  return t.has(kDsUser) && t.has(kDsAssistant) && t.has(kDsEnd) && !t.has("<\uff5cAssistant\uff5c></think>");
}

void deepseek3_read_params(const TemplateText& t, ChatTemplateParams& p) {
  p.think_prompt = t.has_code("<\uff5cAssistant\uff5c><think>\\n'");
  p.join_system_messages = t.has_code("ns.system_prompt+'\\n\\n'+message['content']");
}

std::string deepseek3_render(const ChatRender& r) {
  require_roles(r, "deepseek3", {"system", "user", "assistant"});
  std::string system;
  bool first_system = true;
  for (const ChatMessage& m : r.messages) {
    if (m.role != "system") continue;
    if (r.params.join_system_messages && !first_system) {
      system += "\n\n" + m.content;
    } else {
      system = m.content;
    }
    first_system = false;
  }
  std::string out = r.bos + system;
  for (const ChatMessage& m : r.messages) {
    if (m.role == "user") {
      out += kDsUser;
      out += m.content;
    } else if (m.role == "assistant") {
      // Reasoning is not kept in history.
      out += kDsAssistant;
      out += after_last(m.content, "</think>");
      out += kDsEnd;
    }
  }
  if (r.add_generation_prompt) {
    out += kDsAssistant;
    if (r.params.think_prompt) out += "<think>\n";
  }
  return out;
}

// ---- command-r -------------------------------------------------------------------------------

bool command_r_matches(const TemplateText& t) {
  // Command R7B (<|START_RESPONSE|>) writes a long default preamble: not this format.
  return t.has("<|START_OF_TURN_TOKEN|>") && t.has("<|USER_TOKEN|>") && !t.has("<|START_RESPONSE|>");
}

std::string command_r_render(const ChatRender& r) {
  require_roles(r, "command-r", {"system", "user", "assistant"});
  require_leading_system(r, "command-r");
  std::string out = r.bos;
  for (size_t i = 0; i < r.messages.size(); ++i) {
    const ChatMessage& m = r.messages[i];
    if (m.role == "system") {
      out += "<|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|>" + m.content;  // not stripped, unlike the turns
    } else {
      out += m.role == "user" ? "<|START_OF_TURN_TOKEN|><|USER_TOKEN|>" : "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>";
      out += py_strip(m.content);
    }
    out += "<|END_OF_TURN_TOKEN|>";
  }
  if (r.add_generation_prompt) out += "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>";
  return out;
}

// ---- monarch ---------------------------------------------------------------------------------

bool monarch_matches(const TemplateText& t) {
  return t.has_code("bos_token+message['role']");
}

std::string monarch_render(const ChatRender& r) {
  require_roles(r, "monarch", {"system", "user", "assistant"});
  std::string out;
  for (const ChatMessage& m : r.messages) out += r.bos + m.role + "\n" + m.content + r.eos + "\n";
  if (r.add_generation_prompt) out += r.bos + "assistant\n";
  return out;
}

// ---- openchat --------------------------------------------------------------------------------

bool openchat_matches(const TemplateText& t) {
  return t.has("GPT4 Correct ");
}

std::string openchat_render(const ChatRender& r) {
  require_roles(r, "openchat", {"system", "user", "assistant"});
  std::string out = r.bos;
  for (const ChatMessage& m : r.messages)
    out += "GPT4 Correct " + py_title(m.role) + ": " + m.content + "<|end_of_turn|>";
  if (r.add_generation_prompt) out += "GPT4 Correct Assistant:";
  return out;
}

// ---- alpaca ----------------------------------------------------------------------------------

// The Stanford Alpaca prompt (tatsu-lab/stanford_alpaca), which finetune trains instruction
// records on when the model has no chat template. No model ships it as a template, so the
// predicate asks for the prompt's own words: "### Instruction:" alone is DeepSeek Coder's too.
constexpr std::string_view kAlpacaPreamble =
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n";
constexpr std::string_view kAlpacaInputPreamble =
    "Below is an instruction that describes a task, paired with an input that provides further context. Write a "
    "response that appropriately completes the request.\n\n";

std::string alpaca_turn(const std::string& instruction) {
  return "### Instruction:\n" + instruction + "\n\n### Response:\n";
}

bool alpaca_matches(const TemplateText& t) {
  return t.has("Below is an instruction that describes a task.") && t.has("### Instruction:") &&
         t.has("### Response:");
}

// The system prompt (when not empty) goes before the preamble, as finetune writes a record's
// "system"; each instruction carries its response header, and each reply ends with EOS.
std::string alpaca_render(const ChatRender& r) {
  require_roles(r, "alpaca", {"system", "user", "assistant"});
  require_leading_system(r, "alpaca");
  const auto& messages = r.messages;
  const bool has_system = !messages.empty() && messages[0].role == "system";
  std::string out;
  if (has_system && !messages[0].content.empty()) out += messages[0].content + "\n\n";
  out += kAlpacaPreamble;
  for (size_t i = has_system ? 1 : 0; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    out += m.role == "user" ? alpaca_turn(m.content) : m.content + r.eos + "\n\n";
  }
  return out;
}

}  // namespace

const ChatFamily& phi3_family() {
  static constexpr ChatFamily kFamily = {"phi3", "Phi-3, Phi-3.5", phi3_matches, phi3_read_params, phi3_render};
  return kFamily;
}
const ChatFamily& zephyr_family() {
  static constexpr ChatFamily kFamily = {"zephyr", "Zephyr, TinyLlama Chat v1.0", zephyr_matches, nullptr,
                                         zephyr_render};
  return kFamily;
}
const ChatFamily& gemma_family() {
  static constexpr ChatFamily kFamily = {"gemma", "Gemma, Gemma 2, Gemma 3", gemma_matches, nullptr, gemma_render};
  return kFamily;
}
const ChatFamily& vicuna_orca_family() {
  static constexpr ChatFamily kFamily = {"vicuna-orca", "Orca-Vicuna", vicuna_orca_matches, nullptr,
                                         vicuna_orca_render};
  return kFamily;
}
const ChatFamily& vicuna_family() {
  static constexpr ChatFamily kFamily = {"vicuna", "Vicuna", vicuna_matches, nullptr, vicuna_render};
  return kFamily;
}
const ChatFamily& deepseek_family() {
  static constexpr ChatFamily kFamily = {"deepseek", "DeepSeek Coder", deepseek_matches, deepseek_read_params,
                                         deepseek_render};
  return kFamily;
}
const ChatFamily& deepseek2_family() {
  static constexpr ChatFamily kFamily = {"deepseek2", "DeepSeek V2", deepseek2_matches, nullptr, deepseek2_render};
  return kFamily;
}
const ChatFamily& deepseek3_family() {
  static constexpr ChatFamily kFamily = {"deepseek3", "DeepSeek V3, R1, R1 distills", deepseek3_matches,
                                         deepseek3_read_params, deepseek3_render};
  return kFamily;
}
const ChatFamily& command_r_family() {
  static constexpr ChatFamily kFamily = {"command-r", "Command R, Command R+", command_r_matches, nullptr,
                                         command_r_render};
  return kFamily;
}
const ChatFamily& monarch_family() {
  static constexpr ChatFamily kFamily = {"monarch", "AlphaMonarch", monarch_matches, nullptr, monarch_render};
  return kFamily;
}
const ChatFamily& openchat_family() {
  static constexpr ChatFamily kFamily = {"openchat", "OpenChat 3.5", openchat_matches, nullptr, openchat_render};
  return kFamily;
}

const ChatFamily& alpaca_family() {
  static constexpr ChatFamily kFamily = {"alpaca", "Stanford Alpaca fine-tunes (frugal finetune's prompt)",
                                         alpaca_matches, nullptr, alpaca_render};
  return kFamily;
}

std::string alpaca_prompt(const std::string& instruction, const std::string& input) {
  if (input.empty()) return std::string(kAlpacaPreamble) + alpaca_turn(instruction);
  return std::string(kAlpacaInputPreamble) + "### Instruction:\n" + instruction + "\n\n### Input:\n" + input +
         "\n\n### Response:\n";
}

}  // namespace frugal
