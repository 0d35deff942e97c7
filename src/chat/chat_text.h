// String helpers the chat-template renderers share: Python/Jinja string semantics (strip, trim,
// title, tojson) reproduced exactly, and reading literals out of a Jinja template's text.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace frugal {

// Python's str.strip() with no argument (what Jinja's trim filter calls): removes leading and
// trailing characters for which str.isspace() is true, ASCII and Unicode alike.
std::string_view py_strip(std::string_view text);
// Python's str.strip(c) / lstrip(c) / rstrip(c) for one ASCII character.
std::string_view strip_char(std::string_view text, char c);
std::string_view lstrip_char(std::string_view text, char c);
std::string_view rstrip_char(std::string_view text, char c);

// Python's str.title() for ASCII letters: "system" -> "System", "tool_call" -> "Tool_Call".
std::string py_title(std::string_view text);

// transformers' tojson filter on a string: json.dumps(text, ensure_ascii=False).
std::string json_quote(std::string_view text);

// Everything after the last occurrence of `separator` (text.split(separator)[-1]), or the
// whole text when it does not occur.
std::string_view after_last(std::string_view text, std::string_view separator);

// The Jinja string literal that starts at text[pos] (a ' or " quote), unescaped; nullopt when
// text[pos] is not a quote or the literal does not end.
std::optional<std::string> read_jinja_string(std::string_view text, size_t pos);

// The first `max_chars` characters of a template for an error message, on one line (newlines
// shown as \n), cut at a UTF-8 character boundary, with "..." when cut.
std::string template_excerpt(std::string_view text, size_t max_chars);

// Today's local date as strftime("%d %b %Y") gives it in the C locale: "15 Jan 2025".
std::string today_date_string();

}  // namespace frugal
