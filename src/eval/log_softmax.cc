#include "eval/log_softmax.h"

#include <cmath>

namespace frugal {

RowSoftmax row_softmax(const float* logits, int64_t n_vocab) {
  RowSoftmax r;
  r.max_logit = logits[0];
  for (int64_t i = 1; i < n_vocab; ++i) {
    if (logits[i] > r.max_logit) {
      r.max_logit = logits[i];
      r.argmax = static_cast<int32_t>(i);
    }
  }
  double sum = 0.0;
  for (int64_t i = 0; i < n_vocab; ++i) sum += std::exp(logits[i] - r.max_logit);  // float exp, as llama.cpp
  r.log_sum_exp = std::log(sum);
  return r;
}

}  // namespace frugal
