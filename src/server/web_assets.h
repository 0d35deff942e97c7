// The chat page's static files (src/server/web/), compiled into the binary by a CMake step
// (src/server/web/embed.cmake) so `frugal serve` needs no files beside the model.
#pragma once

#include <cstddef>
#include <string_view>

namespace frugal::server {

struct WebAsset {
  const char* path;          // "/index.html"
  const char* content_type;  // "text/html; charset=utf-8"
  const unsigned char* data;
  size_t size;
};

// The file served at `path` ("/" is "/index.html"); null when there is none.
const WebAsset* find_web_asset(std::string_view path);

}  // namespace frugal::server
