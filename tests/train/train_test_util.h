// Helpers of the training tests: the PyTorch reference dumps (tests/train/reference, made by
// make_torch_reference.py), comparisons that report the worst element, and central finite
// differences in double precision.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/arena.h"
#include "core/thread_pool.h"
#include "io/safetensors.h"
#include "kernels/kernels.h"
#include "ops/op_context.h"
#include "support/test_support.h"

namespace frugal::test {

inline std::string reference_dir() { return source_dir() + "/tests/train/reference"; }

// A reference file's tensors by name, as f32 (or i32) vectors.
class Reference {
 public:
  explicit Reference(const std::string& file) : file_(SafetensorsFile::open(reference_dir() + "/" + file)) {}
  std::vector<float> f32(const std::string& name) const { return values<float>(name, DType::kF32); }
  std::vector<int32_t> i32(const std::string& name) const { return values<int32_t>(name, DType::kI32); }
  std::vector<int64_t> shape(const std::string& name) const { return file_->find(name)->shape; }
  const SafetensorsFile& file() const { return *file_; }

 private:
  std::unique_ptr<SafetensorsFile> file_;

  // The tensor's elements; empty (and a test failure when missing) unless it has `dtype`.
  template <typename T>
  std::vector<T> values(const std::string& name, DType dtype) const {
    const SafetensorsEntry* e = file_->find(name);
    EXPECT_NE(e, nullptr) << name;
    if (e == nullptr || e->dtype != dtype) return {};
    const Tensor t = file_->tensor_view(*e);
    return std::vector<T>(t.as<const T>(), t.as<const T>() + t.numel());
  }
};

// Largest |a - b| relative to the largest |b| (a scale-free error for a whole tensor).
inline double relative_max_error(const std::vector<float>& a, const std::vector<float>& b) {
  double err = 0, scale = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    err = std::max(err, std::abs(double(a[i]) - b[i]));
    scale = std::max(scale, std::abs(double(b[i])));
  }
  return scale > 0 ? err / scale : err;
}
inline double relative_max_error(const std::vector<float>& a, const std::vector<double>& b) {
  double err = 0, scale = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    err = std::max(err, std::abs(double(a[i]) - b[i]));
    scale = std::max(scale, std::abs(b[i]));
  }
  return scale > 0 ? err / scale : err;
}

#define EXPECT_CLOSE(actual, expected, tolerance)                                                        \
  do {                                                                                                   \
    ASSERT_EQ((actual).size(), (expected).size()) << #actual;                                            \
    const double err_ = ::frugal::test::relative_max_error((actual), (expected));                         \
    EXPECT_LE(err_, (tolerance)) << #actual << " vs " << #expected << ": relative max error " << err_;    \
  } while (0)

// d/dx_i of f at x by central differences (step h relative to max(1, |x_i|)).
inline std::vector<double> finite_differences(const std::function<double(const std::vector<double>&)>& f,
                                              std::vector<double> x, double h = 1e-6) {
  std::vector<double> g(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double x0 = x[i], step = h * std::max(1.0, std::abs(x0));
    x[i] = x0 + step;
    const double up = f(x);
    x[i] = x0 - step;
    const double down = f(x);
    x[i] = x0;
    g[i] = (up - down) / (2 * step);
  }
  return g;
}

inline std::vector<double> to_double(const std::vector<float>& v) { return {v.begin(), v.end()}; }
inline std::vector<float> to_float(const std::vector<double>& v) { return {v.begin(), v.end()}; }

// sum(w * y): turns a vector-valued forward into the scalar finite differences need.
inline double dot(const std::vector<double>& w, const std::vector<double>& y) {
  double s = 0;
  for (size_t i = 0; i < y.size(); ++i) s += w[i] * y[i];
  return s;
}

// A thread pool, an arena and the active kernel table, for calling ops.
struct OpEnv {
  explicit OpEnv(int threads = 2) : pool(threads), ctx{pool, arena, kernels::active()} {}
  ThreadPool pool;
  Arena arena;
  OpContext ctx;
};

}  // namespace frugal::test
