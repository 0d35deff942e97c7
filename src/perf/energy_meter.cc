#include "perf/energy_meter.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <optional>

#include "perf/kernel_file.h"

namespace frugal {
namespace {

// A package's counter: a top-level domain ("intel-rapl:0"; "intel-rapl:0:1" is one of its parts,
// cores, uncore or dram, which the package counter already includes) whose `name` says
// "package-N". Another top-level domain, "psys" on Intel client machines (the whole platform,
// the packages included), would count the packages twice; it is not counted, also where no
// package domain exists, as it measures more than the processor (see the header).
bool is_package(const std::filesystem::path& dir) {
  const std::string prefix = "intel-rapl:";
  const std::string folder = dir.filename().string();
  if (!folder.starts_with(prefix) || folder.find(':', prefix.size()) != std::string::npos) return false;
  std::ifstream in(dir / "name");
  std::string name;
  return static_cast<bool>(in >> name) && name.starts_with("package-");
}

}  // namespace

EnergyMeter::EnergyMeter(const std::string& root) {
  namespace fs = std::filesystem;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(root, ec)) {
    if (!is_package(entry.path())) continue;
    Domain d;
    d.counter = (entry.path() / "energy_uj").string();
    const auto now = read_kernel_number(d.counter);
    const auto range = read_kernel_number((entry.path() / "max_energy_range_uj").string());
    if (!now || !range || *range == 0) continue;  // unreadable (the counters need root on newer kernels)
    d.range = *range;
    d.last = *now;
    domains_.push_back(d);
  }
  std::sort(domains_.begin(), domains_.end(), [](const Domain& a, const Domain& b) { return a.counter < b.counter; });
}

double EnergyMeter::joules_since_last() {
  double microjoules = 0;
  for (Domain& d : domains_) {
    const auto now = read_kernel_number(d.counter);
    if (!now) continue;
    microjoules += static_cast<double>(*now >= d.last ? *now - d.last : d.range - d.last + *now);
    d.last = *now;
  }
  return microjoules * 1e-6;
}

}  // namespace frugal
