// Running sums of per-token negative log-likelihoods and the perplexity with its error, as
// llama.cpp's llama-perplexity reports them: PPL = exp(mean NLL), and its uncertainty
// PPL * sqrt(var(NLL) / (n - 1)) with var(NLL) = mean(NLL^2) - mean(NLL)^2 (the standard
// error of the mean NLL carried through exp).
#pragma once

#include <cstdint>

namespace frugal {

// A mean and its standard error from the sums of x and x^2, as llama.cpp's KL-divergence
// report computes them: no error until more than 10 values (llama.cpp prints 0 there; here it
// is NaN, printed "n/a" and written null, not an exact figure), 0 when rounding makes the
// variance non-positive.
struct MeanWithError {
  double value = 0.0;
  double error = 0.0;
};
MeanWithError mean_with_error(double sum, double sum2, int64_t count);

class NllStats {
 public:
  void add(double nll) {
    sum_ += nll;
    sum2_ += nll * nll;
    ++count_;
  }
  void merge(const NllStats& other) {
    sum_ += other.sum_;
    sum2_ += other.sum2_;
    count_ += other.count_;
  }

  int64_t count() const { return count_; }
  double sum() const { return sum_; }
  double sum2() const { return sum2_; }
  double mean() const { return count_ > 0 ? sum_ / count_ : 0.0; }
  double ppl() const;
  // NaN (not known) with fewer than two tokens; 0 when rounding makes the variance
  // non-positive (llama.cpp prints an error instead of a value then).
  double ppl_error() const;

 private:
  double sum_ = 0.0;
  double sum2_ = 0.0;
  int64_t count_ = 0;
};

}  // namespace frugal
