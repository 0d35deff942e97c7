// An error a client caused (or a refusal), as OpenAI reports it: an HTTP status and
// {"error": {"message", "type", "param", "code"}}.
#pragma once

#include <string>

#include "core/check.h"

namespace frugal::server {

class ApiError : public Error {
 public:
  ApiError(int status, const std::string& message, std::string param = "",
           std::string type = "invalid_request_error", std::string code = "")
      : Error(message), status(status), param(std::move(param)), type(std::move(type)), code(std::move(code)) {}

  int status;
  std::string param;  // the request field at fault; empty: none
  std::string type;   // invalid_request_error, authentication_error, not_found_error, ...
  std::string code;   // machine-readable detail; empty: null
};

}  // namespace frugal::server
