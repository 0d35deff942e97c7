// AWQ (Lin et al., 2023), the activation-aware scale search: input channels that carry large
// activations matter more, so before quantizing, each input channel j of the layers reading one
// input is multiplied by s_j and the input divided by it (folded into the preceding RMSNorm's
// weights, or into the rows of the preceding linear), which leaves the model's function
// unchanged while the rounding error of the important channels shrinks by s_j.
//
// As the reference (mit-han-lab/llm-awq, auto_scale): s = a^r / sqrt(max(a^r) min(a^r)) with
// a = mean |x| per channel, r on a grid of 20 ratios in [0, 1), each candidate scored by the
// error it leaves after quantization, the best kept (r = 0, s = 1, is plain round-to-nearest,
// so the search never does worse than RTN on the calibration data). The score here is the
// output error of the group's linears on the calibration inputs, sum_i tr(dW_i H dW_i^T) with H
// the inputs' second moments, computed from the Hessian instead of re-running the block (the
// reference runs the attention / MLP block; this scores the linears it contains).
#pragma once

#include <cstdint>
#include <vector>

#include "core/dtype.h"
#include "core/thread_pool.h"

namespace frugal {

struct AwqMatrix {
  const float* w;  // [n_out, n_in] row-major
  int64_t n_out;
  DType type;      // what it will be quantized to
};

struct AwqResult {
  std::vector<float> scales;  // [n_in], multiply the weights' columns, divide the input
  double ratio = 0;           // the chosen exponent r
  double loss = 0;            // output error at the chosen scales
  double loss_rtn = 0;        // output error of plain round-to-nearest (r = 0)
};

// activation_scale: [n_in] mean |x| (channels that must share a scale, e.g. o_proj columns fed
// by one value head under GQA, must share its value); hessian [n_in, n_in] sum or mean of
// x x^T. With use_importance, each candidate is quantized with diag(H)/s^2 as the importance (the
// imatrix of the scaled input), else without.
AwqResult awq_search(const std::vector<AwqMatrix>& group, int64_t n_in, const std::vector<float>& activation_scale,
                     const double* hessian, bool use_importance, ThreadPool& pool, int grid = 20);

}  // namespace frugal
