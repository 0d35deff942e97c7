#include "train/optimizer.h"

#include <cmath>

#include "core/check.h"

namespace frugal {

AdamW::AdamW(std::vector<Parameter> params, const AdamWOptions& o) : params_(std::move(params)), o_(o) {
  for (const Parameter& p : params_) {
    m_.emplace_back(p.size, 0.0f);
    v_.emplace_back(p.size, 0.0f);
  }
}

void AdamW::step(double lr) {
  ++t_;
  const float b1 = static_cast<float>(o_.beta1), b2 = static_cast<float>(o_.beta2);
  // torch.optim.AdamW (single-tensor path): decay, moments, bias corrections, update.
  const double bias1 = 1.0 - std::pow(o_.beta1, static_cast<double>(t_));
  const double bias2 = 1.0 - std::pow(o_.beta2, static_cast<double>(t_));
  const float step_size = static_cast<float>(lr / bias1);
  const float bias2_sqrt = static_cast<float>(std::sqrt(bias2));
  const float decay = static_cast<float>(1.0 - lr * o_.weight_decay);
  const float eps = static_cast<float>(o_.eps);
  for (size_t i = 0; i < params_.size(); ++i) {
    const Parameter& p = params_[i];
    float* m = m_[i].data();
    float* v = v_[i].data();
    for (int64_t j = 0; j < p.size; ++j) {
      const float g = p.grad[j];
      p.value[j] *= decay;
      m[j] = b1 * m[j] + (1.0f - b1) * g;
      v[j] = b2 * v[j] + (1.0f - b2) * g * g;
      const float denom = std::sqrt(v[j]) / bias2_sqrt + eps;
      p.value[j] -= step_size * (m[j] / denom);
    }
  }
}

void all_reduce_gradients(Communicator& comm, const std::vector<Parameter>& params) {
  if (comm.size() == 1) return;
  int64_t total = 0;
  for (const Parameter& p : params) total += p.size;
  std::vector<float> flat(total);
  int64_t at = 0;
  for (const Parameter& p : params) {
    std::copy_n(p.grad, p.size, flat.data() + at);
    at += p.size;
  }
  comm.all_reduce_sum(flat.data(), total);
  at = 0;
  for (const Parameter& p : params) {
    std::copy_n(flat.data() + at, p.size, p.grad);
    at += p.size;
  }
}

double clip_gradients(const std::vector<Parameter>& params, double max_norm) {
  double sum = 0.0;
  for (const Parameter& p : params)
    for (int64_t j = 0; j < p.size; ++j) sum += static_cast<double>(p.grad[j]) * p.grad[j];
  const double norm = std::sqrt(sum);
  if (max_norm > 0 && norm > max_norm) {
    const float scale = static_cast<float>(max_norm / (norm + 1e-6));
    for (const Parameter& p : params)
      for (int64_t j = 0; j < p.size; ++j) p.grad[j] *= scale;
  }
  return norm;
}

LrSchedule parse_lr_schedule(const std::string& name) {
  if (name == "cosine") return LrSchedule::kCosine;
  if (name == "linear") return LrSchedule::kLinear;
  if (name == "constant") return LrSchedule::kConstant;
  fail("unknown learning-rate schedule '{}' (cosine, linear, constant)", name);
}

double lr_at(LrSchedule schedule, int64_t step, int64_t total, int64_t warmup, double peak, double min_lr) {
  if (warmup > 0 && step < warmup) return peak * static_cast<double>(step + 1) / static_cast<double>(warmup + 1);
  if (schedule == LrSchedule::kConstant) return peak;
  const int64_t decay_steps = std::max<int64_t>(1, total - warmup);
  const double progress = std::clamp(static_cast<double>(step - warmup) / static_cast<double>(decay_steps), 0.0, 1.0);
  if (schedule == LrSchedule::kLinear) return min_lr + (peak - min_lr) * (1.0 - progress);
  return min_lr + (peak - min_lr) * 0.5 * (1.0 + std::cos(M_PI * progress));
}

}  // namespace frugal
