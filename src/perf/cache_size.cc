#include "perf/cache_size.h"

#include <filesystem>
#include <fstream>

namespace frugal {

size_t l3_cache_bytes(const std::string& root) {
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(root, ec)) {
    if (!entry.path().filename().string().starts_with("index")) continue;
    int level = 0;
    if (!(std::ifstream(entry.path() / "level") >> level) || level != 3) continue;
    // sysfs writes the size with a unit letter: "16384K" (the kernel's K is 1024).
    size_t size = 0;
    char unit = 0;
    std::ifstream in(entry.path() / "size");
    if (!(in >> size)) continue;
    in >> unit;
    if (unit == 'K') size <<= 10;
    if (unit == 'M') size <<= 20;
    if (unit == 'G') size <<= 30;
    return size;
  }
  return 0;
}

}  // namespace frugal
