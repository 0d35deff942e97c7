// The memory limit of the process's control group: a container's or a systemd unit's. Memory
// taken past it is not refused: the kernel kills the process (exit 137, no message), so
// commands that commit a known amount up front (the server's KV cache) check against it first.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace frugal {

// The smallest limit on the process's cgroup path (cgroup v2 `memory.max`, v1
// `memory.limit_in_bytes`, each level up to the hierarchy's root); nullopt when none is set or
// none can be read. `proc_cgroup` is /proc/self/cgroup's text and `cgroup_root` the mount point
// of the hierarchies (/sys/fs/cgroup), for tests.
std::optional<uint64_t> cgroup_memory_limit(const std::string& proc_cgroup, const std::string& cgroup_root);
std::optional<uint64_t> cgroup_memory_limit();

// Refuses (frugal::Error) to commit `committing` more bytes when the process's anonymous memory
// and them would pass `limit`, naming `what` is committed and `lower` (the flags that shrink
// it); warns when the file-backed pages the process has resident (mapped weights) no longer fit
// beside them, since they would be evicted and read again from disk.
void check_memory_limit(uint64_t committing, const std::string& what, const std::string& lower,
                        std::optional<uint64_t> limit, uint64_t anonymous, uint64_t file_backed);

}  // namespace frugal
