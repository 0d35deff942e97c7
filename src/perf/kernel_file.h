// Files the kernel writes one number into (sysfs counters, cgroup limits): read by the perf
// probes, which treat a file that is missing or holds no number ("max") as no value.
#pragma once

#include <cstdint>
#include <fstream>
#include <optional>
#include <string>

namespace frugal {

inline std::optional<uint64_t> read_kernel_number(const std::string& path) {
  std::ifstream in(path);
  uint64_t v = 0;
  if (!(in >> v)) return std::nullopt;
  return v;
}

}  // namespace frugal
