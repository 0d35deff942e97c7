// Invariant checks and user-facing errors.
//
// Two kinds of failure, kept apart on purpose:
//  - FRUGAL_CHECK: a broken invariant inside frugal (a bug). Prints file:line and aborts.
//  - frugal::Error: something a user can cause (a file, a flag, a request). Thrown by the
//    io, model-loading and parsing layers, caught once at the API boundary (the CLI's main,
//    the server's request handler) and reported as one line. Kernels and ops never throw.
#pragma once

#include <fmt/format.h>

#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <utility>

namespace frugal {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// Throws frugal::Error with a fmt-formatted message.
template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...));
}

[[noreturn]] void check_failed(const char* file, int line, const char* condition, const std::string& message);

}  // namespace frugal

#define FRUGAL_CHECK(cond, ...)                                                                   \
  do {                                                                                            \
    if (!(cond)) [[unlikely]]                                                                     \
      ::frugal::check_failed(__FILE__, __LINE__, #cond, ::fmt::format("" __VA_ARGS__));           \
  } while (0)
