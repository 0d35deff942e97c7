// Softmax statistics of one row of logits, computed the way llama.cpp's perplexity tool
// computes them (the maximum in float, the sum of expf(x - max) in double) so that frugal's
// perplexity can be compared with llama.cpp's to the fourth digit.
#pragma once

#include <cstdint>

namespace frugal {

struct RowSoftmax {
  float max_logit = 0.0f;
  int32_t argmax = 0;        // first index of the maximum
  double log_sum_exp = 0.0;  // log(sum_i exp(logit_i - max_logit)), >= 0

  // log p(token) = logit - max - log_sum_exp, in double.
  double log_prob(const float* logits, int32_t token) const {
    return static_cast<double>(logits[token]) - max_logit - log_sum_exp;
  }
  // The negative log-likelihood of `token`, what perplexity averages.
  double nll(const float* logits, int32_t token) const { return -log_prob(logits, token); }
};

// logits: [n_vocab]. n_vocab >= 1.
RowSoftmax row_softmax(const float* logits, int64_t n_vocab);

}  // namespace frugal
