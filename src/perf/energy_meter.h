// The energy the processor packages use, from the Linux powercap (RAPL) counters where the
// kernel exposes them: /sys/class/powercap/intel-rapl:N/energy_uj of every domain named
// "package-N" (AMD Zen packages appear under the same driver name). A "psys" domain (the whole
// platform, packages included) is never summed with them, and not used alone either: where no
// package counter exists the meter is unavailable, so that bench's "processor packages" figure
// stays one thing on every machine. Virtual machines usually have none; then the user gives the
// machine's power draw instead (`frugal bench --watts`).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace frugal {

class EnergyMeter {
 public:
  // `root`: the powercap folder (a test points it at a folder of its own).
  explicit EnergyMeter(const std::string& root = "/sys/class/powercap");

  bool available() const { return !domains_.empty(); }
  // Joules all packages used since the meter was made or last asked; a counter that wrapped
  // around (at max_energy_range_uj) is counted across the wrap.
  double joules_since_last();

 private:
  struct Domain {
    std::string counter;  // .../energy_uj
    uint64_t range = 0;   // max_energy_range_uj: where the counter wraps
    uint64_t last = 0;
  };
  std::vector<Domain> domains_;
};

}  // namespace frugal
