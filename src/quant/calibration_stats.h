// What calibration collects per input group (the linears that read the same activations, e.g.
// q/k/v of one layer): the sum of squares of each input column (an importance matrix), the sum
// of absolute values (AWQ's activation scale) and, when asked, the sum of outer products x x^T
// (GPTQ's Hessian, AWQ's loss).
#pragma once

#include <cstdint>
#include <map>
#include <utility>
#include <vector>

#include "ops/linear.h"
#include "quant/working_model.h"

namespace frugal {

struct InputStats {
  int64_t n_in = 0;
  int64_t rows = 0;              // activation rows (tokens) seen
  std::vector<double> sum_sq;    // [n_in]
  std::vector<double> sum_abs;   // [n_in]
  std::vector<double> hessian;   // [n_in, n_in] sum of x x^T, empty unless requested

  // Mean of x^2 per column: the importance of each column's weights (llama.cpp's imatrix).
  std::vector<float> mean_sq() const;
  // Mean of |x| per column (AWQ's s_x).
  std::vector<float> mean_abs() const;
};

class StatsCollector final : public LinearObserver {
 public:
  // Collects for the groups `wanted` accepts (all when empty), with Hessians when asked.
  using Filter = bool (*)(InputGroup group, int64_t layer, const void* context);
  StatsCollector(WorkingModel& model, bool hessians, Filter wanted = nullptr, const void* context = nullptr);

  void observe(const Linear& layer, const float* x, int64_t n_rows) override;

  InputStats* find(InputGroup group, int64_t layer);
  const std::map<std::pair<int, int64_t>, InputStats>& all() const { return stats_; }

 private:
  WorkingModel& model_;
  bool hessians_;
  Filter wanted_;
  const void* context_;
  std::map<std::pair<int, int64_t>, InputStats> stats_;
  // q/k/v (and gate/up) see the same x in one linear_multi: it is counted once.
  const float* last_x_ = nullptr;
  int64_t last_rows_ = 0;
  std::pair<int, int64_t> last_key_{-1, -1};
  std::vector<float> transposed_, outer_;
};

}  // namespace frugal
