#include "quant/methods/awq.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "quant/methods/linalg.h"
#include "quant/methods/rtn.h"

namespace frugal {
namespace {

// sum over rows of dW_r^T H dW_r for dW = W - Q(W diag(s)) diag(s)^-1.
double scaled_error(const AwqMatrix& m, int64_t n_in, const std::vector<float>& s, const double* h,
                    const float* importance, ThreadPool& pool) {
  std::vector<float> scaled(static_cast<size_t>(m.n_out * n_in));
  for (int64_t r = 0; r < m.n_out; ++r)
    for (int64_t j = 0; j < n_in; ++j) scaled[r * n_in + j] = m.w[r * n_in + j] * s[j];
  const Buffer q = rtn_quantize(m.type, scaled.data(), m.n_out, n_in, importance, pool);
  std::vector<float> back = dequantize_matrix(m.type, q.data(), m.n_out, n_in, pool);
  for (int64_t r = 0; r < m.n_out; ++r)
    for (int64_t j = 0; j < n_in; ++j) back[r * n_in + j] = m.w[r * n_in + j] - back[r * n_in + j] / s[j];
  // Rows in parallel, each row's quadratic form in double, summed in row order so that the
  // search picks the same scales on every run whatever the threads' timing.
  std::vector<double> row_loss(static_cast<size_t>(m.n_out));
  pool.parallel_for(m.n_out, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) row_loss[r] = linalg::quadratic_form_rows(back.data() + r * n_in, 1, n_in, h);
  });
  return std::accumulate(row_loss.begin(), row_loss.end(), 0.0);
}

}  // namespace

AwqResult awq_search(const std::vector<AwqMatrix>& group, int64_t n_in, const std::vector<float>& activation_scale,
                     const double* hessian, bool use_importance, ThreadPool& pool, int grid) {
  AwqResult best;
  best.loss = INFINITY;
  std::vector<float> s(static_cast<size_t>(n_in)), importance(static_cast<size_t>(n_in));
  for (int g = 0; g < grid; ++g) {
    const double ratio = static_cast<double>(g) / grid;
    float smax = 0, smin = INFINITY;
    for (int64_t j = 0; j < n_in; ++j) {
      s[j] = static_cast<float>(std::pow(std::max(activation_scale[j], 1e-4f), ratio));
      smax = std::max(smax, s[j]);
      smin = std::min(smin, s[j]);
    }
    const float norm = std::sqrt(smax * smin);
    for (int64_t j = 0; j < n_in; ++j) {
      s[j] /= norm;
      importance[j] = static_cast<float>(hessian[j * n_in + j] / (static_cast<double>(s[j]) * s[j]));
    }
    double loss = 0;
    for (const AwqMatrix& m : group) loss += scaled_error(m, n_in, s, hessian, use_importance ? importance.data() : nullptr, pool);
    if (g == 0) best.loss_rtn = loss;
    if (loss < best.loss) {
      best.loss = loss;
      best.ratio = ratio;
      best.scales = s;
    }
  }
  return best;
}

}  // namespace frugal
