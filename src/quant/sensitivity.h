// The --bpw mode: a type per matrix chosen from measured sensitivity, to meet a bits-per-weight
// budget with the least damage.
//
// Measurement (one forward pass over a few calibration windows per matrix): the KL divergence of
// the model's next-token distributions from the full-precision ones when that one matrix alone is
// quantized to the cheapest candidate type. The forwards run a layer at a time, a matrix's from its
// own layer on (LayerwisePass), so one layer is in f32 at a time. Prediction for the other
// candidates: that KL divergence scaled by the ratio of the matrix's importance-weighted squared
// rounding errors (sum_j E[x_j^2] sum_i dW_ij^2: to second order the KL divergence is proportional
// to it), and contributions of different matrices added. Choice: the mixture minimising the
// predicted sum under the budget (Lagrangian relaxation over a multiplier found by bisection, then
// the best-value upgrades that still fit).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "quant/methods/imatrix.h"
#include "quant/working_model.h"

namespace frugal {

struct TensorSensitivity {
  std::string name;
  int64_t elements = 0;
  std::vector<DType> types;        // the candidates that fit this matrix
  std::vector<double> kld;         // predicted KL divergence per candidate (same order)
  double measured_kld = 0;         // measured at types.front()
};

struct BpwPlan {
  std::map<std::string, DType> types;
  std::vector<TensorSensitivity> sensitivities;
  double bits_per_weight = 0;      // of the matrices, as chosen
  double predicted_kld = 0;
};

// Throws frugal::Error naming --bpw when even the smallest mixture (every matrix not in `fixed`
// in its smallest candidate that fits its rows) has more bits per weight than the target.
void check_bpw_reachable(WorkingModel& model, const std::vector<DType>& candidates, double target_bpw,
                         const std::map<std::string, DType>& fixed);

// candidates: types ordered by any rule (sorted here by bits). fixed: matrices whose type is
// already decided (not re-chosen; they count in the budget). progress(done, total) per pass.
BpwPlan plan_bits_per_weight(WorkingModel& model, const std::vector<std::vector<int32_t>>& windows,
                             const ImportanceMatrix& imatrix, std::vector<DType> candidates, double target_bpw,
                             const std::map<std::string, DType>& fixed,
                             const std::function<void(int64_t, int64_t)>& progress = {});

// Chooses per item one option (cost[i][k] bits, loss[i][k]) minimising total loss with total
// cost <= budget; returns the option index per item (the cheapest everywhere when even that
// exceeds the budget). Exposed for tests.
std::vector<int> choose_under_budget(const std::vector<std::vector<double>>& cost,
                                     const std::vector<std::vector<double>>& loss, double budget);

}  // namespace frugal
