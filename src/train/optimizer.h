// The optimizer step: gradients reduced across ranks (dist/communicator.h), clipped by their
// global norm, then AdamW with decoupled weight decay, at a learning rate from a warmup +
// decay schedule. The arithmetic follows torch.optim.AdamW step for step, so a run can be
// compared with PyTorch's.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "dist/communicator.h"
#include "train/lora.h"

namespace frugal {

struct AdamWOptions {
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
};

class AdamW {
 public:
  AdamW(std::vector<Parameter> params, const AdamWOptions& options);

  // One update of every parameter from its gradient, at learning rate lr.
  void step(double lr);
  int64_t steps() const { return t_; }
  const std::vector<Parameter>& parameters() const { return params_; }

  // The state a checkpoint keeps: step count and both moments of every parameter.
  std::vector<float>& first_moment(size_t i) { return m_[i]; }
  std::vector<float>& second_moment(size_t i) { return v_[i]; }
  void set_steps(int64_t t) { t_ = t; }

 private:
  std::vector<Parameter> params_;
  AdamWOptions o_;
  std::vector<std::vector<float>> m_, v_;
  int64_t t_ = 0;
};

// Sums every parameter's gradient over the ranks of `comm` (one buffer, one collective).
void all_reduce_gradients(Communicator& comm, const std::vector<Parameter>& params);

// The global L2 norm of all gradients, computed in double; when above max_norm (> 0) every
// gradient is scaled by max_norm / (norm + 1e-6), as torch.nn.utils.clip_grad_norm_ does.
// Returns the norm before clipping.
double clip_gradients(const std::vector<Parameter>& params, double max_norm);

enum class LrSchedule { kCosine, kLinear, kConstant };
// "cosine", "linear", "constant"; throws frugal::Error listing them.
LrSchedule parse_lr_schedule(const std::string& name);

// Linear warmup over warmup_steps, then decay towards min_lr over the remaining steps.
// `step` counts from 0 (the learning rate of the first update is lr_at(0)). Warmup step s
// (< w) takes peak * (s + 1) / (w + 1), so the first update is not wasted at 0 as in Hugging
// Face's schedules (which start at 0). The decay follows theirs: it reaches min_lr at step
// total, one past the last, so the last update's rate lies just above min_lr.
double lr_at(LrSchedule schedule, int64_t step, int64_t total_steps, int64_t warmup_steps, double peak_lr, double min_lr);

}  // namespace frugal
