// cgroup_memory_limit over cgroup trees of the test's own (v1, v2, hybrid, a path missing under
// the mount, no limit), and check_memory_limit's refusal and warning. The real check (serve
// under a cgroup with a limit) is server.kv_cache_over_the_memory_limit_is_refused.
#include "perf/memory_limit.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/check.h"
#include "support/test_support.h"

namespace frugal {
namespace {

namespace fs = std::filesystem;

void write(const std::string& path, const std::string& text) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path) << text;
}

std::string fresh_root(const std::string& name) {
  const std::string root = test::temp_dir("memory_limit") + "/" + name;
  fs::remove_all(root);
  fs::create_directories(root);
  return root;
}

TEST(CgroupMemoryLimit, V1TakesTheSmallestLimitOnThePath) {
  const std::string root = fresh_root("v1");
  write(root + "/memory/memory.limit_in_bytes", "9223372036854771712\n");  // v1's "no limit"
  write(root + "/memory/a/memory.limit_in_bytes", "300000000\n");
  write(root + "/memory/a/b/memory.limit_in_bytes", "500000000\n");
  EXPECT_EQ(cgroup_memory_limit("5:cpu,cpuacct:/a/b\n4:memory:/a/b\n0::/\n", root), 300000000u);
  EXPECT_EQ(cgroup_memory_limit("4:memory:/\n", root), std::nullopt);
  // Another controller's line is not the memory hierarchy.
  EXPECT_EQ(cgroup_memory_limit("5:cpu,cpuacct:/a/b\n", root), std::nullopt);
}

TEST(CgroupMemoryLimit, V2ReadsMemoryMax) {
  const std::string root = fresh_root("v2");
  write(root + "/cgroup.controllers", "cpu memory pids\n");
  write(root + "/svc/memory.max", "max\n");
  EXPECT_EQ(cgroup_memory_limit("0::/svc\n", root), std::nullopt);
  write(root + "/svc/memory.max", "1073741824\n");
  EXPECT_EQ(cgroup_memory_limit("0::/svc\n", root), 1073741824u);
  // Hybrid: v2 at unified/ beside v1 hierarchies without a memory limit.
  const std::string hybrid = fresh_root("hybrid");
  write(hybrid + "/unified/cgroup.controllers", "\n");
  write(hybrid + "/unified/x/memory.max", "200000000\n");
  write(hybrid + "/memory/memory.limit_in_bytes", "9223372036854771712\n");
  EXPECT_EQ(cgroup_memory_limit("4:memory:/\n0::/x\n", hybrid), 200000000u);
}

TEST(CgroupMemoryLimit, APathMissingUnderTheMountStillReadsItsRoot) {
  // A container that sees its host's cgroup path but has its own cgroup mounted at the root.
  const std::string root = fresh_root("container");
  write(root + "/memory/memory.limit_in_bytes", "200000000\n");
  EXPECT_EQ(cgroup_memory_limit("4:memory:/docker/0123abcd\n", root), 200000000u);
  EXPECT_EQ(cgroup_memory_limit("", root), std::nullopt);
  EXPECT_EQ(cgroup_memory_limit("4:memory:/x\n", root + "/nothing-here"), std::nullopt);
}

TEST(CheckMemoryLimit, RefusesWhatTheLimitCannotHold) {
  EXPECT_NO_THROW(check_memory_limit(900, "the KV cache", "--ctx", std::nullopt, 500, 0));
  EXPECT_NO_THROW(check_memory_limit(400, "the KV cache", "--ctx", 1000, 500, 0));
  try {
    check_memory_limit(600'000'000, "the KV cache", "--parallel or --ctx", 1'000'000'000, 500'000'000, 0);
    FAIL() << "no refusal";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("the KV cache needs 600 MB beside the 500 MB"), std::string::npos) << m;
    EXPECT_NE(m.find("1000 MB its control group allows"), std::string::npos) << m;
    EXPECT_NE(m.find("lower --parallel or --ctx"), std::string::npos) << m;
  }
  // Mapped file pages past the limit are a warning (they can be evicted), not a refusal.
  EXPECT_NO_THROW(check_memory_limit(400, "the KV cache", "--ctx", 1000, 500, 300));
}

}  // namespace
}  // namespace frugal
