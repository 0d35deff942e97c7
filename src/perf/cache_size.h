// The size of the processor's last-level (L3) cache, from Linux's sysfs. bench uses it to tell a
// decode whose weights stay in that cache from one that streams them from memory: only the
// second is bounded by the memory bandwidth it is judged against.
#pragma once

#include <cstddef>
#include <string>

namespace frugal {

// Bytes of the level-3 cache that cpu0 uses (/sys/devices/system/cpu/cpu0/cache/index*/level 3
// and its `size`, "16384K"); 0 where none is listed. `root`: the cache folder (a test points it
// at a folder of its own).
size_t l3_cache_bytes(const std::string& root = "/sys/devices/system/cpu/cpu0/cache");

}  // namespace frugal
