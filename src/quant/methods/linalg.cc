#include "quant/methods/linalg.h"

#include <cmath>

namespace frugal::linalg {

bool cholesky_lower(std::vector<double>& a, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    double* aj = &a[j * n];
    double s = aj[j];
    for (int64_t k = 0; k < j; ++k) s -= aj[k] * aj[k];
    if (!(s > 0)) return false;
    const double ljj = std::sqrt(s);
    aj[j] = ljj;
    for (int64_t i = j + 1; i < n; ++i) {
      double* ai = &a[i * n];
      double t = ai[j];
      for (int64_t k = 0; k < j; ++k) t -= ai[k] * aj[k];
      ai[j] = t / ljj;
    }
    for (int64_t k = j + 1; k < n; ++k) aj[k] = 0;
  }
  return true;
}

std::vector<double> inverse_from_cholesky(const std::vector<double>& l, int64_t n) {
  // m = L^-1 (lower), column by column by forward substitution; then a^-1 = m^T m.
  std::vector<double> m(static_cast<size_t>(n * n), 0.0);
  for (int64_t c = 0; c < n; ++c) {
    m[c * n + c] = 1.0 / l[c * n + c];
    for (int64_t i = c + 1; i < n; ++i) {
      double s = 0;
      for (int64_t k = c; k < i; ++k) s += l[i * n + k] * m[k * n + c];
      m[i * n + c] = -s / l[i * n + i];
    }
  }
  std::vector<double> inv(static_cast<size_t>(n * n), 0.0);
  // inv[i][j] = sum_k m[k][i] m[k][j] over k >= max(i, j); accumulate row by row of m.
  for (int64_t k = 0; k < n; ++k) {
    const double* mk = &m[k * n];
    for (int64_t i = 0; i <= k; ++i) {
      const double v = mk[i];
      if (v == 0) continue;
      double* row = &inv[i * n];
      for (int64_t j = 0; j <= k; ++j) row[j] += v * mk[j];
    }
  }
  return inv;
}

bool cholesky_upper(std::vector<double>& a, int64_t n) {
  if (!cholesky_lower(a, n)) return false;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = i + 1; j < n; ++j) {
      a[i * n + j] = a[j * n + i];
      a[j * n + i] = 0;
    }
  return true;
}

double quadratic_form_rows(const float* d, int64_t n_rows, int64_t n, const double* h) {
  double total = 0;
  std::vector<double> t(static_cast<size_t>(n));
  for (int64_t r = 0; r < n_rows; ++r) {
    const float* dr = d + r * n;
    std::fill(t.begin(), t.end(), 0.0);
    // t = h d_r as a sum of h's rows scaled by d_r (each t[i] accumulates independently).
    for (int64_t j = 0; j < n; ++j) {
      const double v = dr[j];
      if (v == 0) continue;
      const double* hj = h + j * n;
      for (int64_t i = 0; i < n; ++i) t[i] += v * hj[i];
    }
    double s = 0;
    for (int64_t i = 0; i < n; ++i) s += dr[i] * t[i];
    total += s;
  }
  return total;
}

}  // namespace frugal::linalg
