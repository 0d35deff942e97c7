// The <|start_header_id|> families: Llama 3 (3.0, and the many fine-tunes that copy its
// template) and Llama 3.1/3.2/3.3, whose template always writes a system header with a date.
#include <string>

#include "chat/chat_family.h"
#include "chat/chat_text.h"

namespace frugal {
namespace {

void write_header(std::string& out, std::string_view role) {
  out += "<|start_header_id|>";
  out += role;
  out += "<|end_header_id|>\n\n";
}

// ---- llama3 ----------------------------------------------------------------------------------

bool llama3_matches(const TemplateText& t) {
  return t.has("<|start_header_id|>") && t.has("<|end_header_id|>");
}

void llama3_read_params(const TemplateText& t, ChatTemplateParams& p) {
  // The first Meta-Llama-3-Instruct release ends with the assistant header unconditionally.
  p.always_generation_prompt = !t.has("add_generation_prompt");
}

std::string llama3_render(const ChatRender& r) {
  require_roles(r, "llama3", {"system", "user", "assistant", "tool"});
  std::string out;
  for (size_t i = 0; i < r.messages.size(); ++i) {
    if (i == 0) out += r.bos;
    write_header(out, r.messages[i].role);
    out += py_strip(r.messages[i].content);
    out += "<|eot_id|>";
  }
  if (r.add_generation_prompt || r.params.always_generation_prompt) write_header(out, "assistant");
  return out;
}

// ---- llama3.1 --------------------------------------------------------------------------------

bool llama31_matches(const TemplateText& t) {
  return t.has("<|start_header_id|>") && t.has("Cutting Knowledge Date");
}

void llama31_read_params(const TemplateText& t, ChatTemplateParams& p) {
  if (t.has("strftime_now")) {
    p.date_is_today = true;  // Llama 3.2: strftime_now("%d %b %Y")
    return;
  }
  // Llama 3.1: {%- set date_string = "26 Jul 2024" %}
  static constexpr std::string_view kSet = "date_string = ";
  const size_t at = t.raw().find(kSet);
  if (at == std::string_view::npos) return;
  if (auto date = read_jinja_string(t.raw(), at + kSet.size())) p.date = *date;
}

std::string llama31_render(const ChatRender& r) {
  require_roles(r, "llama3.1", {"system", "user", "assistant", "tool", "ipython"});
  const auto& messages = r.messages;
  const bool has_system = !messages.empty() && messages[0].role == "system";
  std::string out = r.bos;
  write_header(out, "system");
  out += "Cutting Knowledge Date: December 2023\nToday Date: ";
  out += r.params.date_is_today ? r.today : std::string_view(r.params.date);
  out += "\n\n";
  if (has_system) out += py_strip(messages[0].content);
  out += "<|eot_id|>";
  for (size_t i = has_system ? 1 : 0; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    if (m.role == "tool" || m.role == "ipython") {
      // A string is "iterable" to Jinja, so the template JSON-quotes tool results.
      write_header(out, "ipython");
      out += json_quote(m.content);
    } else {
      write_header(out, m.role);
      out += py_strip(m.content);
    }
    out += "<|eot_id|>";
  }
  if (r.add_generation_prompt) write_header(out, "assistant");
  return out;
}

}  // namespace

const ChatFamily& llama31_family() {
  static constexpr ChatFamily kFamily = {"llama3.1", "Llama 3.1, 3.2, 3.3", llama31_matches, llama31_read_params,
                                         llama31_render};
  return kFamily;
}
const ChatFamily& llama3_family() {
  static constexpr ChatFamily kFamily = {"llama3", "Llama 3", llama3_matches, llama3_read_params, llama3_render};
  return kFamily;
}

}  // namespace frugal
