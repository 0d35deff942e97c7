#include "quant/methods/gptq.h"

#include <algorithm>
#include <atomic>
#include <memory>
#include <mutex>
#include <numeric>
#include <vector>

#include "core/check.h"
#include "quant/methods/block_codec.h"
#include "quant/methods/linalg.h"

namespace frugal {

GptqResult gptq_quantize(const float* w, int64_t n_out, int64_t n_in, const double* h, DType type,
                         const GptqOptions& options, ThreadPool& pool, uint8_t* dst) {
  FRUGAL_CHECK(gptq_supports(type), "GPTQ does not support {}", dtype_name(type));
  const int64_t n = n_in;
  GptqResult result;

  // Dead inputs (never non-zero on the calibration data) cannot be weighed: their weights are
  // set to zero and their diagonal to 1, as the reference does.
  std::vector<char> dead(static_cast<size_t>(n), 0);
  double diag_mean = 0;
  for (int64_t i = 0; i < n; ++i) {
    dead[i] = h[i * n + i] <= 0;
    diag_mean += dead[i] ? 0.0 : h[i * n + i];
  }
  diag_mean /= static_cast<double>(n);
  FRUGAL_CHECK(diag_mean > 0, "GPTQ: the Hessian is zero (no calibration input reached this layer)");
  // diag(H) is each column's importance when a block is fitted (the imatrix of these inputs).
  std::vector<float> importance(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    importance[i] = static_cast<float>(std::max(dead[i] ? 0.0 : h[i * n + i], 1e-8 * diag_mean));

  std::vector<int64_t> perm(static_cast<size_t>(n));
  std::iota(perm.begin(), perm.end(), 0);
  if (options.act_order)
    std::stable_sort(perm.begin(), perm.end(), [&](int64_t a, int64_t b) { return h[a * n + a] > h[b * n + b]; });

  // U: the upper Cholesky factor of the inverse of the damped, permuted Hessian.
  std::vector<double> u;
  double damp = options.damp;
  for (;; ++result.dampening_retries, damp *= 10) {
    if (result.dampening_retries > 6)
      fail("GPTQ: the calibration Hessian is not positive definite even with dampening {}", damp);
    std::vector<double> hp(static_cast<size_t>(n * n));
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) hp[i * n + j] = h[perm[i] * n + perm[j]];
    for (int64_t i = 0; i < n; ++i) {
      if (dead[perm[i]]) {
        for (int64_t j = 0; j < n; ++j) hp[i * n + j] = hp[j * n + i] = 0;
        hp[i * n + i] = 1;
      }
      hp[i * n + i] += damp * diag_mean;
    }
    if (!linalg::cholesky_lower(hp, n)) continue;
    u = linalg::inverse_from_cholesky(hp, n);
    if (linalg::cholesky_upper(u, n)) break;
  }

  const std::unique_ptr<BlockCodec> codec = make_block_codec(type, n, w, n_out, importance.data());
  const int64_t block = codec->block();
  const size_t block_bytes = codec->block_bytes();
  const size_t stride = row_bytes(type, n);
  // A block is fitted from fully updated weights only if it lies inside one lazy batch.
  int64_t batch = std::max<int64_t>(1, options.batch_columns);
  if (block < n && batch % block != 0) batch = (batch + block - 1) / block * block;

  constexpr int64_t kTile = 8;  // rows sharing each pass over U's rows
  std::mutex loss_mutex;
  pool.parallel_for(n_out, [&](int64_t r_begin, int64_t r_end) {
    std::vector<double> wt(static_cast<size_t>(kTile * n)), err(static_cast<size_t>(kTile * batch));
    std::vector<float> fit_values(static_cast<size_t>(block));
    double loss = 0;
    for (int64_t r0 = r_begin; r0 < r_end; r0 += kTile) {
      const int64_t rows = std::min(kTile, r_end - r0);
      for (int64_t r = 0; r < rows; ++r) {
        const float* wr = w + (r0 + r) * n;
        for (int64_t i = 0; i < n; ++i) wt[r * n + i] = dead[perm[i]] ? 0.0 : wr[perm[i]];
        if (options.act_order) {  // static groups: every block from the original weights
          for (int64_t b = 0; b < n / block; ++b) {
            for (int64_t i = 0; i < block; ++i) fit_values[i] = dead[b * block + i] ? 0.0f : wr[b * block + i];
            codec->fit(fit_values.data(), importance.data() + b * block, dst + (r0 + r) * stride + b * block_bytes);
          }
        }
      }
      for (int64_t i1 = 0; i1 < n; i1 += batch) {
        const int64_t i2 = std::min(n, i1 + batch);
        for (int64_t i = i1; i < i2; ++i) {
          const int64_t c = perm[i], b = c / block, pos = c % block;
          const double* ui = &u[i * n];
          const double d = ui[i];
          for (int64_t r = 0; r < rows; ++r) {
            double* wr = &wt[r * n];
            uint8_t* bytes = dst + (r0 + r) * stride + b * block_bytes;
            if (!options.act_order && pos == 0) {  // columns c .. c + block are current here
              for (int64_t k = 0; k < block; ++k) fit_values[k] = static_cast<float>(wr[i + k]);
              codec->fit(fit_values.data(), importance.data() + c, bytes);
            }
            const double q = codec->code(bytes, pos, static_cast<float>(wr[i]));
            const double e = (wr[i] - q) / d;
            loss += 0.5 * e * e;
            err[r * batch + (i - i1)] = e;
            for (int64_t j = i + 1; j < i2; ++j) wr[j] -= e * ui[j];
          }
        }
        // The batch's errors reach the columns after it all at once.
        for (int64_t t = 0; t < i2 - i1; ++t) {
          const double* ut = &u[(i1 + t) * n];
          for (int64_t r = 0; r < rows; ++r) {
            const double e = err[r * batch + t];
            if (e == 0) continue;
            double* wr = &wt[r * n];
            for (int64_t j = i2; j < n; ++j) wr[j] -= e * ut[j];
          }
        }
      }
    }
    std::lock_guard<std::mutex> lock(loss_mutex);
    result.loss += loss;
  });
  return result;
}

}  // namespace frugal
