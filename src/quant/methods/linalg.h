// Small dense linear algebra in double precision for the quantization methods (GPTQ's inverse
// Hessian, AWQ's and the report's Hessian-weighted errors). Row-major n x n matrices.
#pragma once

#include <cstdint>
#include <vector>

namespace frugal::linalg {

// In place: a = L L^T with L lower triangular (the upper triangle is zeroed). Returns false
// when a is not positive definite (a is then garbage).
bool cholesky_lower(std::vector<double>& a, int64_t n);

// The inverse of a symmetric positive definite matrix given its lower Cholesky factor l.
std::vector<double> inverse_from_cholesky(const std::vector<double>& l, int64_t n);

// U upper triangular with a = U^T U (the transpose of a's lower factor); false when a is not
// positive definite.
bool cholesky_upper(std::vector<double>& a, int64_t n);

// sum over rows r of d_r^T h d_r for d [n_rows, n] (float) and h [n, n]: the squared error of
// outputs that d (a weight error) causes on inputs whose second moment is h.
double quadratic_form_rows(const float* d, int64_t n_rows, int64_t n, const double* h);

}  // namespace frugal::linalg
