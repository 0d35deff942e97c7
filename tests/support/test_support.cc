#include "support/test_support.h"

#include <cmath>
#include <csignal>

#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <unistd.h>

namespace frugal::test {

std::string shared_dir() {
  if (const char* env = std::getenv("FRUGAL_SHARED"); env != nullptr && *env != '\0') return env;
  return FRUGAL_SHARED_DIR;
}

std::string shared_path(const std::string& relative) { return shared_dir() + "/" + relative; }

std::string temp_dir(const std::string& name) {
  const std::string dir = std::string(FRUGAL_TEST_TMP) + "/" + name;
  std::filesystem::create_directories(dir);
  return dir;
}

std::string source_dir() { return FRUGAL_SOURCE_DIR; }
std::string binary_dir() { return FRUGAL_BINARY_DIR; }

std::string synth_model(const std::string& preset, int seed, const std::string& dtype) {
  const std::string dir = std::string(FRUGAL_TEST_TMP) + "/synth/" + preset + "-s" + std::to_string(seed) + "-" + dtype;
  if (!std::filesystem::exists(dir + "/config.json")) {
    // Build into a scratch folder and rename, so parallel tests never see half a model.
    const std::string tmp = dir + ".tmp" + std::to_string(::getpid());
    const std::string cmd = "/usr/bin/python3 " + shared_path("tools/synth_model.py") + " " + preset + " " + tmp +
                            " --seed " + std::to_string(seed) + " --dtype " + dtype + " > /dev/null";
    if (std::system(cmd.c_str()) != 0) throw std::runtime_error("synth_model.py failed: " + cmd);
    std::error_code ec;
    std::filesystem::rename(tmp, dir, ec);
    if (ec) std::filesystem::remove_all(tmp);
  }
  return dir;
}

std::vector<float> random_floats(size_t n, uint32_t seed, float scale) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

double rms(const std::vector<float>& x) {
  double s = 0;
  for (float v : x) s += static_cast<double>(v) * v;
  return std::sqrt(s / static_cast<double>(x.size()));
}

FileSizeLimit::FileSizeLimit(uint64_t bytes) {
  if (::getrlimit(RLIMIT_FSIZE, &old_) != 0) throw std::runtime_error("getrlimit(RLIMIT_FSIZE) failed");
  struct rlimit lower = old_;
  lower.rlim_cur = bytes;
  old_handler_ = std::signal(SIGXFSZ, SIG_IGN);
  if (::setrlimit(RLIMIT_FSIZE, &lower) != 0) throw std::runtime_error("setrlimit(RLIMIT_FSIZE) failed");
}

FileSizeLimit::~FileSizeLimit() {
  ::setrlimit(RLIMIT_FSIZE, &old_);
  std::signal(SIGXFSZ, old_handler_);
}

}  // namespace frugal::test
