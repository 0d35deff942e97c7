// l3_cache_bytes over a sysfs cache folder of the test's own: the level-3 entry among the L1 and
// L2 ones, its unit letter, and no L3 at all.
#include "perf/cache_size.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "support/test_support.h"

namespace frugal {
namespace {

namespace fs = std::filesystem;

void write_cache(const std::string& dir, int level, const std::string& size) {
  fs::create_directories(dir);
  std::ofstream(dir + "/level") << level << "\n";
  std::ofstream(dir + "/size") << size << "\n";
}

TEST(CacheSize, ReadsTheLevelThreeEntry) {
  const std::string root = test::temp_dir("cache_size") + "/cache";
  fs::remove_all(root);
  write_cache(root + "/index0", 1, "32K");
  write_cache(root + "/index2", 2, "512K");
  write_cache(root + "/index3", 3, "16384K");
  EXPECT_EQ(l3_cache_bytes(root), size_t{16} << 20);
  write_cache(root + "/index3", 3, "32M");
  EXPECT_EQ(l3_cache_bytes(root), size_t{32} << 20);
}

TEST(CacheSize, NoLevelThreeIsZero) {
  const std::string root = test::temp_dir("cache_size") + "/no_l3";
  fs::remove_all(root);
  write_cache(root + "/index0", 1, "32K");
  write_cache(root + "/index1", 2, "1024K");
  EXPECT_EQ(l3_cache_bytes(root), 0u);
  EXPECT_EQ(l3_cache_bytes(root + "/missing"), 0u);
}

}  // namespace
}  // namespace frugal
