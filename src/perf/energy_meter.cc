#include "perf/energy_meter.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <optional>

namespace frugal {
namespace {

std::optional<uint64_t> read_number(const std::string& path) {
  std::ifstream in(path);
  uint64_t v = 0;
  if (!(in >> v)) return std::nullopt;
  return v;
}

// "intel-rapl:0" is a package; "intel-rapl:0:1" one of its parts (cores, uncore, dram), which
// the package counter already includes.
bool is_package(const std::string& name) {
  const std::string prefix = "intel-rapl:";
  return name.starts_with(prefix) && name.find(':', prefix.size()) == std::string::npos;
}

}  // namespace

EnergyMeter::EnergyMeter(const std::string& root) {
  namespace fs = std::filesystem;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(root, ec)) {
    if (!is_package(entry.path().filename().string())) continue;
    Domain d;
    d.counter = (entry.path() / "energy_uj").string();
    const auto now = read_number(d.counter);
    const auto range = read_number((entry.path() / "max_energy_range_uj").string());
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
    const auto now = read_number(d.counter);
    if (!now) continue;
    microjoules += static_cast<double>(*now >= d.last ? *now - d.last : d.range - d.last + *now);
    d.last = *now;
  }
  return microjoules * 1e-6;
}

}  // namespace frugal
