#include "eval/kl_divergence.h"

#include <algorithm>
#include <cmath>

namespace frugal {

KlToken compare_with_base(const float* logits, int64_t n_vocab, const RowSoftmax& softmax, const LogProbRow& base,
                          int32_t next_token) {
  KlToken t;
  const double log_norm = static_cast<double>(softmax.max_logit) + softmax.log_sum_exp;
  double kld = 0.0, mass = 0.0;
  for (int64_t i = 0; i < n_vocab; ++i) {
    const double log_p_base = base.log_prob(i);
    if (log_p_base > kKlMinBaseLogProb) {
      const double p_base = std::exp(log_p_base);
      kld += p_base * (log_p_base - (logits[i] - log_norm));
      mass += p_base;
    }
  }
  t.kld = kld;
  t.base_mass = mass;
  t.nll = softmax.nll(logits, next_token);
  t.nll_base = base.nll;
  t.p_diff = std::exp(-t.nll) - std::exp(-t.nll_base);
  t.same_top = softmax.argmax == base.top;
  return t;
}

double percentile(const std::vector<float>& sorted, double fraction) {
  if (sorted.empty()) return 0.0;
  if (fraction <= 0) return sorted.front();
  if (fraction >= 1) return sorted.back();
  double p = fraction * static_cast<double>(sorted.size() - 1);
  const size_t i = static_cast<size_t>(p);
  p -= static_cast<double>(i);
  return (1 - p) * sorted[i] + p * sorted[std::min(i + 1, sorted.size() - 1)];
}

Quantiles quantiles(std::vector<float> v) {
  std::sort(v.begin(), v.end());
  Quantiles q;
  q.min = percentile(v, 0.0);
  q.p0_1 = percentile(v, 0.001);
  q.p1 = percentile(v, 0.01);
  q.p5 = percentile(v, 0.05);
  q.p10 = percentile(v, 0.10);
  q.p25 = percentile(v, 0.25);
  q.median = percentile(v, 0.5);
  q.p75 = percentile(v, 0.75);
  q.p90 = percentile(v, 0.90);
  q.p95 = percentile(v, 0.95);
  q.p99 = percentile(v, 0.99);
  q.p99_9 = percentile(v, 0.999);
  q.max = percentile(v, 1.0);
  return q;
}

void KlStats::add(const KlToken& t) {
  sum_nll_ += t.nll;
  sum_nll2_ += t.nll * t.nll;
  sum_nll_base_ += t.nll_base;
  sum_nll_base2_ += t.nll_base * t.nll_base;
  sum_nll_nll_base_ += t.nll * t.nll_base;
  sum_kld_ += t.kld;
  sum_kld2_ += t.kld * t.kld;
  const double d2 = t.p_diff * t.p_diff;
  sum_p_diff_ += t.p_diff;
  sum_p_diff2_ += d2;
  sum_p_diff4_ += d2 * d2;
  n_same_top_ += t.same_top ? 1 : 0;
  ++count_;
  kld_values_.push_back(static_cast<float>(t.kld));
  p_diff_values_.push_back(static_cast<float>(t.p_diff));
}

KlSummary KlStats::summary(bool with_quantiles) const {
  KlSummary s;
  s.count = count_;
  if (count_ == 0) return s;
  const MeanWithError log_ppl = mean_with_error(sum_nll_, sum_nll2_, count_);
  const MeanWithError log_ppl_base = mean_with_error(sum_nll_base_, sum_nll_base2_, count_);
  // Covariance of the two mean NLLs (llama.cpp: none below 10 values).
  double cov = 0.0;
  if (count_ >= 10) {
    const double n = static_cast<double>(count_);
    cov = (sum_nll_nll_base_ / n - (sum_nll_ / n) * (sum_nll_base_ / n)) / (n - 1);
  }
  s.ppl = {std::exp(log_ppl.value), std::exp(log_ppl.value) * log_ppl.error};
  s.ppl_base = {std::exp(log_ppl_base.value), std::exp(log_ppl_base.value) * log_ppl_base.error};
  const double denom = log_ppl.error * log_ppl_base.error;
  s.ln_ppl_correlation = denom > 0 ? cov / denom : 0.0;
  const double ratio_var = log_ppl.error * log_ppl.error + log_ppl_base.error * log_ppl_base.error - 2.0 * cov;
  s.ln_ppl_ratio = {log_ppl.value - log_ppl_base.value, std::sqrt(std::max(0.0, ratio_var))};
  s.ppl_ratio = {std::exp(s.ln_ppl_ratio.value), std::exp(s.ln_ppl_ratio.value) * s.ln_ppl_ratio.error};
  const double ppl_cov = s.ppl.value * s.ppl_base.value * cov;
  const double diff_var = s.ppl.error * s.ppl.error + s.ppl_base.error * s.ppl_base.error - 2.0 * ppl_cov;
  s.ppl_diff = {s.ppl.value - s.ppl_base.value, std::sqrt(std::max(0.0, diff_var))};
  s.kld = mean_with_error(sum_kld_, sum_kld2_, count_);
  s.p_diff = mean_with_error(sum_p_diff_, sum_p_diff2_, count_);
  const MeanWithError mse = mean_with_error(sum_p_diff2_, sum_p_diff4_, count_);
  const double rms = std::sqrt(mse.value);
  s.rms_p_diff = {rms, rms > 0 ? 0.5 / rms * mse.error : 0.0};
  const double same = static_cast<double>(n_same_top_) / count_;
  s.same_top = {same, count_ > 1 ? std::sqrt(same * (1 - same) / (count_ - 1)) : 0.0};
  // Too few values for any uncertainty (see mean_with_error): the ones derived from them are
  // not known either (the clamps above would have made them 0).
  if (count_ <= 10) {
    for (MeanWithError* m : {&s.ppl, &s.ppl_base, &s.ln_ppl_ratio, &s.ppl_ratio, &s.ppl_diff, &s.kld, &s.p_diff,
                             &s.rms_p_diff, &s.same_top})
      m->error = std::nan("");
    s.ln_ppl_correlation = std::nan("");
  }
  if (with_quantiles) {
    s.kld_quantiles = quantiles(kld_values_);
    s.p_diff_quantiles = quantiles(p_diff_values_);
  }
  return s;
}

}  // namespace frugal
