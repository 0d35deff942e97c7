#include "chat/chat_family.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>

#include "core/check.h"

namespace frugal {

TemplateText::TemplateText(std::string_view text) : raw_(text) {
  code_.reserve(text.size());
  for (const char ch : text) {
    if (ch == ' ' || ch == '\t') continue;
    if (ch == '\n') {
      code_ += "\\n";
    } else {
      code_ += ch;
    }
  }
}

void require_roles(const ChatRender& request, std::string_view family, std::initializer_list<std::string_view> roles) {
  for (size_t i = 0; i < request.messages.size(); ++i) {
    const std::string& role = request.messages[i].role;
    if (std::find(roles.begin(), roles.end(), role) == roles.end()) {
      fail("chat template '{}' has no role '{}' (message {}); it takes {}", family, role, i + 1,
           fmt::join(roles, ", "));
    }
  }
}

void require_leading_system(const ChatRender& request, std::string_view family) {
  for (size_t i = 1; i < request.messages.size(); ++i) {
    if (request.messages[i].role == "system") {
      fail("chat template '{}' takes a system message only as the first message, but message {} is one", family, i + 1);
    }
  }
}

}  // namespace frugal
