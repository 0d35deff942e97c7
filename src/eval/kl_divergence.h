// Token-by-token comparison of a model with a base model's stored log-probabilities
// (eval/logprob_file.h), and the statistics llama.cpp's KL-divergence mode reports: mean KL
// divergence with its uncertainty and its distribution, perplexities of both and their ratio,
// the change in the probability of the right token (Δp), and how often the top tokens agree.
#pragma once

#include <cstdint>
#include <vector>

#include "eval/log_softmax.h"
#include "eval/logprob_file.h"
#include "eval/nll_stats.h"

namespace frugal {

// Base log-probabilities at or below this are left out of the KL sum (llama.cpp's cut-off;
// the compression cannot represent them anyway).
inline constexpr double kKlMinBaseLogProb = -16.0;
// How far a stored row's probabilities may add up from 1: the terms dropped below the cut-off
// take at most n_vocab * e^-16 (0.03 for 256k tokens), the 16-bit steps far less.
inline constexpr double kMaxBaseMassError = 0.1;

struct KlToken {
  double kld = 0.0;       // sum_i p_base,i (log p_base,i - log q_i)
  double nll = 0.0;       // -log q(next token)
  double nll_base = 0.0;  // -log p_base(next token)
  double p_diff = 0.0;    // q(next) - p_base(next)
  bool same_top = false;  // argmax q == argmax p_base
  // sum_i p_base,i over the terms kept: 1 within the 16-bit rounding and the dropped tail for
  // a row that was written; a damaged row (zeroed by a disk hole) passes every field's check
  // and decodes to probability 1 for every token.
  double base_mass = 0.0;
};

// logits [n_vocab] of the model under test with their softmax statistics; `base` the stored row
// for the same position; next_token the token that follows.
KlToken compare_with_base(const float* logits, int64_t n_vocab, const RowSoftmax& softmax, const LogProbRow& base,
                          int32_t next_token);

// Values at fractions of a sorted sample, with linear interpolation between neighbours
// (llama.cpp's percentile); the median is the 0.5 point.
struct Quantiles {
  double min = 0, p0_1 = 0, p1 = 0, p5 = 0, p10 = 0, p25 = 0, median = 0, p75 = 0, p90 = 0, p95 = 0, p99 = 0, p99_9 = 0,
         max = 0;
};
double percentile(const std::vector<float>& sorted, double fraction);
Quantiles quantiles(std::vector<float> values);

struct KlSummary {
  int64_t count = 0;
  MeanWithError ppl;              // PPL(Q), the model under test
  MeanWithError ppl_base;         // PPL(base)
  double ln_ppl_correlation = 0;  // Cor(ln PPL(Q), ln PPL(base)) of the mean NLLs
  MeanWithError ln_ppl_ratio;     // ln(PPL(Q)/PPL(base))
  MeanWithError ppl_ratio;        // PPL(Q)/PPL(base)
  MeanWithError ppl_diff;         // PPL(Q) - PPL(base)
  MeanWithError kld;              // mean KL divergence
  Quantiles kld_quantiles;
  MeanWithError p_diff;  // mean Δp of the next token
  Quantiles p_diff_quantiles;
  MeanWithError rms_p_diff;  // sqrt(mean Δp^2)
  MeanWithError same_top;    // fraction of positions with the same top token
};

class KlStats {
 public:
  void add(const KlToken& t);
  int64_t count() const { return count_; }
  // The running figures llama.cpp prints per chunk are in it too (the quantiles cost a sort).
  KlSummary summary(bool with_quantiles = true) const;

 private:
  double sum_nll_ = 0, sum_nll2_ = 0;
  double sum_nll_base_ = 0, sum_nll_base2_ = 0;
  double sum_nll_nll_base_ = 0;
  double sum_kld_ = 0, sum_kld2_ = 0;
  double sum_p_diff_ = 0, sum_p_diff2_ = 0, sum_p_diff4_ = 0;
  int64_t n_same_top_ = 0;
  int64_t count_ = 0;
  std::vector<float> kld_values_;
  std::vector<float> p_diff_values_;
};

}  // namespace frugal
