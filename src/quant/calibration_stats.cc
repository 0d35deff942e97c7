#include "quant/calibration_stats.h"

#include <cmath>

#include "core/check.h"
#include "kernels/kernels.h"

namespace frugal {

std::vector<float> InputStats::mean_sq() const {
  std::vector<float> out(static_cast<size_t>(n_in));
  for (int64_t i = 0; i < n_in; ++i) out[i] = rows > 0 ? static_cast<float>(sum_sq[i] / rows) : 0.0f;
  return out;
}

std::vector<float> InputStats::mean_abs() const {
  std::vector<float> out(static_cast<size_t>(n_in));
  for (int64_t i = 0; i < n_in; ++i) out[i] = rows > 0 ? static_cast<float>(sum_abs[i] / rows) : 0.0f;
  return out;
}

StatsCollector::StatsCollector(WorkingModel& model, bool hessians, Filter wanted, const void* context)
    : model_(model), hessians_(hessians), wanted_(wanted), context_(context) {}

InputStats* StatsCollector::find(InputGroup group, int64_t layer) {
  auto it = stats_.find({static_cast<int>(group), layer});
  return it == stats_.end() ? nullptr : &it->second;
}

void StatsCollector::observe(const Linear& layer, const float* x, int64_t n_rows) {
  const WorkingTensor* t = model_.find(&layer);
  if (t == nullptr || t->group == InputGroup::kNone) return;
  const std::pair<int, int64_t> key{static_cast<int>(t->group), t->layer};
  if (x == last_x_ && n_rows == last_rows_ && key == last_key_) return;
  last_x_ = x;
  last_rows_ = n_rows;
  last_key_ = key;
  if (wanted_ != nullptr && !wanted_(t->group, t->layer, context_)) return;
  const int64_t n = layer.n_in();
  InputStats& s = stats_[key];
  if (s.n_in == 0) {
    s.n_in = n;
    s.sum_sq.assign(static_cast<size_t>(n), 0.0);
    s.sum_abs.assign(static_cast<size_t>(n), 0.0);
    if (hessians_) s.hessian.assign(static_cast<size_t>(n * n), 0.0);
  }
  FRUGAL_CHECK(s.n_in == n, "input group of {} changed width", t->name);
  s.rows += n_rows;
  for (int64_t r = 0; r < n_rows; ++r) {
    const float* xr = x + r * n;
    for (int64_t i = 0; i < n; ++i) {
      s.sum_sq[i] += static_cast<double>(xr[i]) * xr[i];
      s.sum_abs[i] += std::fabs(xr[i]);
    }
  }
  if (!hessians_) return;
  // x^T x through the f32 matrix-product kernel: with xt = x^T [n, n_rows] as both operands,
  // Y[i, j] = sum_t xt[i, t] xt[j, t]. Each call sums at most a batch of rows in f32 before the
  // result is added to the double-precision total.
  // Rows are padded with zeros to a multiple of 64 so the kernel sees a friendly k.
  const int64_t k = (n_rows + 63) / 64 * 64;
  transposed_.assign(static_cast<size_t>(n * k), 0.0f);
  for (int64_t r = 0; r < n_rows; ++r)
    for (int64_t i = 0; i < n; ++i) transposed_[i * k + r] = x[r * n + i];
  outer_.resize(static_cast<size_t>(n * n));
  const kernels::KernelTable& table = kernels::active();
  const kernels::GemmKernel gemm = kernels::gemm_for(table, DType::kF32);
  kernels::GemmArgs args;
  args.x = transposed_.data();
  args.x_stride = static_cast<size_t>(k) * sizeof(float);
  args.w = transposed_.data();
  args.w_stride = args.x_stride;
  args.y = outer_.data();
  args.y_stride = static_cast<size_t>(n);
  args.m = n;
  args.k = k;
  model_.engine().pool().parallel_for(n, [&](int64_t n0, int64_t n1) { gemm.fn(args, n0, n1); },
                                      std::max<int64_t>(1, gemm.n_block));
  for (int64_t i = 0; i < n * n; ++i) s.hessian[i] += outer_[i];
}

}  // namespace frugal
