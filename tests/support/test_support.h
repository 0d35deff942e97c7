// Helpers shared by the test executables: where the shared models/data/references live, a
// scratch directory, random data.
#pragma once

#include <sys/resource.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace frugal::test {

// ../shared (models, data, reference outputs), from $FRUGAL_SHARED or the build setting.
std::string shared_dir();
std::string shared_path(const std::string& relative);
// A scratch directory under the build tree, created on demand, unique to `name`.
std::string temp_dir(const std::string& name);
std::string source_dir();
std::string binary_dir();

// Runs a synthetic-model preset through ../shared/tools/synth_model.py once per build tree.
std::string synth_model(const std::string& preset, int seed, const std::string& dtype);

std::vector<float> random_floats(size_t n, uint32_t seed, float scale = 1.0f);
// Root mean square, accumulated in double (error budgets are fractions of the data's RMS).
double rms(const std::vector<float>& x);

// A full disk for the scope's lifetime: the process's file size limit (RLIMIT_FSIZE) lowered
// to `bytes`, SIGXFSZ ignored, so that writing or reserving past it fails with EFBIG. CI cannot
// mount a small file system; this fails the same write calls.
class FileSizeLimit {
 public:
  explicit FileSizeLimit(uint64_t bytes);
  ~FileSizeLimit();
  FileSizeLimit(const FileSizeLimit&) = delete;
  FileSizeLimit& operator=(const FileSizeLimit&) = delete;

 private:
  struct rlimit old_ {};
  void (*old_handler_)(int) = nullptr;
};

}  // namespace frugal::test
