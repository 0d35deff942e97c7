// EnergyMeter over a powercap folder of the test's own: package domains only (not their parts,
// not the platform's psys), a counter that wraps, and no domain at all (a virtual machine).
#include "perf/energy_meter.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "support/test_support.h"

namespace frugal {
namespace {

namespace fs = std::filesystem;

void write_domain(const std::string& dir, uint64_t energy, uint64_t range, const std::string& name = "") {
  fs::create_directories(dir);
  if (!name.empty()) std::ofstream(dir + "/name") << name << "\n";
  std::ofstream(dir + "/energy_uj") << energy << "\n";
  std::ofstream(dir + "/max_energy_range_uj") << range << "\n";
}

TEST(EnergyMeter, SumsPackagesAcrossAWrap) {
  const std::string root = test::temp_dir("energy_meter") + "/powercap";
  fs::remove_all(root);
  write_domain(root + "/intel-rapl:0", 1'000'000, 10'000'000, "package-0");
  write_domain(root + "/intel-rapl:1", 9'500'000, 10'000'000, "package-1");
  write_domain(root + "/intel-rapl:0:0", 0, 10'000'000, "core");  // a part of package 0: not counted again
  EnergyMeter meter(root);
  ASSERT_TRUE(meter.available());
  write_domain(root + "/intel-rapl:0", 3'500'000, 10'000'000);  // +2.5 J
  write_domain(root + "/intel-rapl:1", 500'000, 10'000'000);    // wrapped: +1.0 J
  write_domain(root + "/intel-rapl:0:0", 5'000'000, 10'000'000);
  EXPECT_DOUBLE_EQ(meter.joules_since_last(), 3.5);
  EXPECT_DOUBLE_EQ(meter.joules_since_last(), 0.0);  // from the last reading on
}

// An Intel client machine: package-0 and psys (the platform, package included) side by side.
// Both were summed, 35 J for the package's 10.
TEST(EnergyMeter, PlatformDomainIsNotAddedToThePackage) {
  const std::string root = test::temp_dir("energy_meter") + "/psys";
  fs::remove_all(root);
  const uint64_t range = 262'143'328'850;
  write_domain(root + "/intel-rapl:0", 1'000'000, range, "package-0");
  write_domain(root + "/intel-rapl:1", 1'000'000, range, "psys");
  write_domain(root + "/intel-rapl:0:0", 1'000'000, range, "core");
  EnergyMeter meter(root);
  ASSERT_TRUE(meter.available());
  write_domain(root + "/intel-rapl:0", 11'000'000, range);  // the package: +10 J
  write_domain(root + "/intel-rapl:1", 26'000'000, range);  // the platform: +25 J, the package's 10 among them
  write_domain(root + "/intel-rapl:0:0", 7'000'000, range);
  EXPECT_DOUBLE_EQ(meter.joules_since_last(), 10.0);

  // psys alone is not a processor package: no meter (bench asks for --watts) rather than a
  // platform figure labelled as the packages'.
  fs::remove_all(root + "/intel-rapl:0");
  fs::remove_all(root + "/intel-rapl:0:0");
  EXPECT_FALSE(EnergyMeter(root).available());
}

TEST(EnergyMeter, NoCountersIsUnavailable) {
  const std::string root = test::temp_dir("energy_meter") + "/empty";
  fs::create_directories(root);
  EnergyMeter none(root);
  EXPECT_FALSE(none.available());
  EXPECT_EQ(none.joules_since_last(), 0.0);
  EXPECT_FALSE(EnergyMeter(root + "/missing").available());
}

}  // namespace
}  // namespace frugal
