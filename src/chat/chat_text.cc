#include "chat/chat_text.h"

#include <fmt/format.h>

#include <array>
#include <cstdint>
#include <ctime>

#include "tokenizer/utf8.h"

namespace frugal {
namespace {

// Python's str.isspace(): Unicode White_Space plus the ASCII separators \x1c-\x1f.
bool py_isspace(uint32_t cp) {
  return is_white_space(cp) || (cp >= 0x1C && cp <= 0x1F);
}

}  // namespace

std::string_view py_strip(std::string_view text) {
  const size_t begin = utf8_leading_bytes(text, py_isspace);
  text.remove_prefix(begin);
  text.remove_suffix(utf8_trailing_bytes(text, py_isspace));
  return text;
}

std::string_view lstrip_char(std::string_view text, char c) {
  const size_t begin = text.find_first_not_of(c);
  return begin == std::string_view::npos ? std::string_view() : text.substr(begin);
}

std::string_view rstrip_char(std::string_view text, char c) {
  const size_t last = text.find_last_not_of(c);
  return last == std::string_view::npos ? std::string_view() : text.substr(0, last + 1);
}

std::string_view strip_char(std::string_view text, char c) {
  return rstrip_char(lstrip_char(text, c), c);
}

std::string py_title(std::string_view text) {
  std::string out(text);
  bool previous_is_letter = false;
  for (char& ch : out) {
    const bool upper = ch >= 'A' && ch <= 'Z';
    const bool lower = ch >= 'a' && ch <= 'z';
    if (lower && !previous_is_letter) ch = static_cast<char>(ch - 'a' + 'A');
    if (upper && previous_is_letter) ch = static_cast<char>(ch - 'A' + 'a');
    previous_is_letter = upper || lower;
  }
  return out;
}

std::string json_quote(std::string_view text) {
  std::string out = "\"";
  for (const char ch : text) {
    switch (ch) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (static_cast<unsigned char>(ch) < 0x20) {
          out += fmt::format("\\u{:04x}", static_cast<unsigned>(ch));
        } else {
          out += ch;
        }
    }
  }
  out += '"';
  return out;
}

std::string_view after_last(std::string_view text, std::string_view separator) {
  const size_t pos = text.rfind(separator);
  return pos == std::string_view::npos ? text : text.substr(pos + separator.size());
}

std::optional<std::string> read_jinja_string(std::string_view text, size_t pos) {
  if (pos >= text.size() || (text[pos] != '\'' && text[pos] != '"')) return std::nullopt;
  const char quote = text[pos];
  std::string out;
  for (size_t i = pos + 1; i < text.size(); ++i) {
    const char ch = text[i];
    if (ch == quote) return out;
    if (ch != '\\') {
      out += ch;
      continue;
    }
    if (++i == text.size()) break;
    // Jinja string literals use Python's escapes; templates only use these.
    switch (text[i]) {
      case 'n':
        out += '\n';
        break;
      case 't':
        out += '\t';
        break;
      case 'r':
        out += '\r';
        break;
      default:
        out += text[i];  // \\ \' \"
    }
  }
  return std::nullopt;
}

std::string template_excerpt(std::string_view text, size_t max_chars) {
  std::string out;
  size_t chars = 0;
  size_t pos = 0;
  while (pos < text.size() && chars < max_chars) {
    size_t len = utf8_valid_length(text, pos);
    if (len == 0) len = 1;  // a stray byte: copy it as it is
    if (text[pos] == '\n') {
      out += "\\n";
    } else {
      out.append(text.substr(pos, len));
    }
    pos += len;
    ++chars;
  }
  if (pos < text.size()) out += "...";
  return out;
}

std::string today_date_string() {
  static constexpr std::array<const char*, 12> kMonths = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  const std::time_t now = std::time(nullptr);
  std::tm local{};
  localtime_r(&now, &local);
  return fmt::format("{:02d} {} {}", local.tm_mday, kMonths[local.tm_mon], local.tm_year + 1900);
}

}  // namespace frugal
