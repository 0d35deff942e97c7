#include "eval/nll_stats.h"

#include <cmath>

namespace frugal {

MeanWithError mean_with_error(double sum, double sum2, int64_t count) {
  if (count < 1) return {};
  const double mean = sum / count;
  const double variance = sum2 / count - mean * mean;
  if (count <= 10) return {mean, std::nan("")};
  const double error = variance > 0 ? std::sqrt(variance / (count - 1)) : 0.0;
  return {mean, error};
}

double NllStats::ppl() const {
  return std::exp(mean());
}

double NllStats::ppl_error() const {
  if (count_ < 2) return std::nan("");
  const double m = mean();
  const double variance = sum2_ / count_ - m * m;
  if (!(variance > 0)) return 0.0;
  return std::sqrt(variance / (count_ - 1)) * ppl();
}

}  // namespace frugal
