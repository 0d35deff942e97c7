#include "perf/memory_limit.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "core/check.h"
#include "core/log.h"
#include "perf/kernel_file.h"

namespace frugal {
namespace {

// Limits this large mean none: cgroup v1 writes "no limit" as 2^63 rounded down to a page.
constexpr uint64_t kNoLimit = uint64_t{1} << 62;

std::optional<std::string> read_text(const std::string& path) {
  std::ifstream f(path);
  if (!f) return std::nullopt;
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

bool exists(const std::string& path) {
  std::error_code ec;
  return std::filesystem::exists(path, ec);
}

// The limit in `file` at `path` of the hierarchy mounted at `mount`, and at every level above
// it: a parent's limit binds its children. The path may be missing under the mount (a
// container that sees its host's cgroup path but has its own cgroup mounted at the root):
// its levels are skipped and the root's file still counts.
std::optional<uint64_t> smallest_on_path(const std::string& mount, std::string path, const std::string& file) {
  std::optional<uint64_t> smallest;
  while (true) {
    // "max" (v2) reads as no number, 2^63 rounded down to a page (v1) as past kNoLimit: none.
    if (const auto v = read_kernel_number(mount + (path == "/" ? "" : path) + "/" + file); v && *v < kNoLimit)
      smallest = std::min(smallest.value_or(*v), *v);
    if (path == "/" || path.empty()) break;
    const size_t slash = path.find_last_of('/');
    path = slash == 0 || slash == std::string::npos ? "/" : path.substr(0, slash);
  }
  return smallest;
}

}  // namespace

std::optional<uint64_t> cgroup_memory_limit(const std::string& proc_cgroup, const std::string& cgroup_root) {
  std::optional<uint64_t> limit;
  const auto take = [&](std::optional<uint64_t> v) {
    if (v) limit = std::min(limit.value_or(*v), *v);
  };
  std::istringstream lines(proc_cgroup);
  std::string line;
  while (std::getline(lines, line)) {
    // "hierarchy-id:controllers:path"
    const size_t a = line.find(':'), b = a == std::string::npos ? a : line.find(':', a + 1);
    if (b == std::string::npos) continue;
    const std::string id = line.substr(0, a), controllers = line.substr(a + 1, b - a - 1), path = line.substr(b + 1);
    if (id == "0" && controllers.empty()) {
      // cgroup v2: mounted at the root, or at unified/ beside v1 hierarchies (hybrid).
      const std::string mounts[] = {cgroup_root, cgroup_root + "/unified"};
      for (const std::string& mount : mounts)
        if (exists(mount + "/cgroup.controllers")) take(smallest_on_path(mount, path, "memory.max"));
    } else if (("," + controllers + ",").find(",memory,") != std::string::npos) {
      take(smallest_on_path(cgroup_root + "/memory", path, "memory.limit_in_bytes"));
    }
  }
  return limit;
}

std::optional<uint64_t> cgroup_memory_limit() {
  const auto text = read_text("/proc/self/cgroup");
  return text ? cgroup_memory_limit(*text, "/sys/fs/cgroup") : std::nullopt;
}

void check_memory_limit(uint64_t committing, const std::string& what, const std::string& lower,
                        std::optional<uint64_t> limit, uint64_t anonymous, uint64_t file_backed) {
  if (!limit) return;
  const auto mb = [](uint64_t b) { return static_cast<double>(b) / 1e6; };
  if (anonymous + committing > *limit)
    fail("{} needs {:.0f} MB beside the {:.0f} MB this process holds, more than the {:.0f} MB its control group "
         "allows (a container's or a service's memory limit): the kernel would kill it; lower {}",
         what, mb(committing), mb(anonymous), mb(*limit), lower);
  if (anonymous + committing + file_backed > *limit)
    log_warn("{} ({:.0f} MB) and this process's {:.0f} MB leave {:.0f} MB of the control group's {:.0f} MB limit for "
             "the {:.0f} MB of mapped model file it reads: those pages will be evicted and read again from disk",
             what, mb(committing), mb(anonymous), mb(*limit - anonymous - committing), mb(*limit), mb(file_backed));
}

}  // namespace frugal
