#include "perf/memory_usage.h"

#include <sys/resource.h>

#include <cstdio>
#include <cstring>

namespace frugal {
namespace {

// One "Name:   1234 kB" line of /proc/self/status, in bytes.
size_t status_field_bytes(const char* name) {
  FILE* f = std::fopen("/proc/self/status", "r");
  if (f == nullptr) return 0;
  char line[256];
  size_t kb = 0;
  const size_t len = std::strlen(name);
  while (std::fgets(line, sizeof line, f) != nullptr) {
    if (std::strncmp(line, name, len) == 0 && line[len] == ':') {
      std::sscanf(line + len + 1, "%zu", &kb);
      break;
    }
  }
  std::fclose(f);
  return kb * 1024;
}

}  // namespace

size_t current_rss_bytes() { return status_field_bytes("VmRSS"); }
size_t anonymous_rss_bytes() { return status_field_bytes("RssAnon"); }
size_t file_rss_bytes() { return status_field_bytes("RssFile"); }

size_t peak_rss_bytes() {
  if (size_t hwm = status_field_bytes("VmHWM"); hwm > 0) return hwm;
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<size_t>(usage.ru_maxrss) * 1024;
}

void reset_peak_rss() {
  // Writing 5 to clear_refs resets the peak RSS to the current RSS (Linux 4.0+).
  if (FILE* f = std::fopen("/proc/self/clear_refs", "w")) {
    std::fputs("5", f);
    std::fclose(f);
  }
}

}  // namespace frugal
