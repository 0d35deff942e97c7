// The training products with AVX2: Y = X·W (input gradients, P·V, dS·K) and Y = Aᵀ·B
// (weight gradients, Pᵀ·dO, dSᵀ·Q), all f32, and silu_mul's gradient (the AVX-512 kernels'
// twins with 8 lanes).
//
// Both products are written in axpy form: 8 adjacent outputs of a row of Y share a vector
// accumulator, and every step broadcasts one scalar of the left operand against a vector of
// the right one. A register tile of MR rows x NR vectors reuses every load MR or NR times.
// Each output element is one chain of FMAs in reduction order, continued from the value in
// memory when the reduction is cut into blocks (the stored partial sum is the exact register
// value), so the result never depends on the tiling or on how callers split the work.
#include <algorithm>

#include "kernels/cpu/avx2/simd_avx2.h"
#include "kernels/kernels.h"

namespace frugal::kernels::avx2 {
namespace {

// Reduction steps per block: the block's rows of the right operand (kBlock x NR vectors)
// stay in L1/L2 while the tiles of rows stream past them.
constexpr int64_t kBlock = 256;

// Y[MR rows, NR vectors] over reductions [k0, k1). `last` masks the final vector's lanes.
// Left operand element (row i, step k) is at lhs[i * lhs_row + k * lhs_step]; the right
// operand's step k row starts at rhs + k * rhs_stride.
template <int MR, int NR>
inline void tile(const float* lhs, int64_t lhs_row, int64_t lhs_step, const float* rhs, int64_t rhs_stride, float* y,
                 int64_t y_stride, int64_t k0, int64_t k1, bool load_y, __m256i last) {
  const __m256i all = _mm256_set1_epi32(-1);
  __m256 acc[MR][NR];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j)
      acc[i][j] = load_y ? _mm256_maskload_ps(y + i * y_stride + j * 8, j == NR - 1 ? last : all) : _mm256_setzero_ps();
  for (int64_t k = k0; k < k1; ++k) {
    __m256 r[NR];
    const float* rp = rhs + k * rhs_stride;
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) r[j] = _mm256_maskload_ps(rp + j * 8, j == NR - 1 ? last : all);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const __m256 l = _mm256_broadcast_ss(lhs + i * lhs_row + k * lhs_step);
#pragma GCC unroll 8
      for (int j = 0; j < NR; ++j) acc[i][j] = _mm256_fmadd_ps(l, r[j], acc[i][j]);
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) _mm256_maskstore_ps(y + i * y_stride + j * 8, j == NR - 1 ? last : all, acc[i][j]);
}

// Rows [0, m) of Y for one panel of NR vectors starting at column `col`.
template <int MR, int NR>
inline void panel(const float* lhs, int64_t lhs_row, int64_t lhs_step, const float* rhs, int64_t rhs_stride, float* y,
                  int64_t y_stride, int64_t m, int64_t col, int64_t k0, int64_t k1, bool load_y, __m256i last) {
  int64_t i = 0;
  for (; i + MR <= m; i += MR)
    tile<MR, NR>(lhs + i * lhs_row, lhs_row, lhs_step, rhs + col, rhs_stride, y + i * y_stride + col, y_stride, k0, k1,
                 load_y, last);
  for (; i < m; ++i)
    tile<1, NR>(lhs + i * lhs_row, lhs_row, lhs_step, rhs + col, rhs_stride, y + i * y_stride + col, y_stride, k0, k1,
                load_y, last);
}

// The shared driver: Y[m, n] (+)= sum_k L(i, k) * R[k, :], blocked over k. Tiles of 6 rows x 2
// vectors: 12 accumulators, 2 right-operand vectors and a broadcast in the 16 ymm registers.
void drive(const float* lhs, int64_t lhs_row, int64_t lhs_step, const float* rhs, int64_t rhs_stride, float* y,
           int64_t y_stride, int64_t m, int64_t n, int64_t k, bool accumulate) {
  constexpr int kMR = 6;
  constexpr int kNR = 2;
  if (m <= 0 || n <= 0) return;
  if (k == 0) {
    if (!accumulate)
      for (int64_t i = 0; i < m; ++i) std::fill_n(y + i * y_stride, n, 0.0f);
    return;
  }
  const __m256i all = _mm256_set1_epi32(-1);
  for (int64_t k0 = 0; k0 < k; k0 += kBlock) {
    const int64_t k1 = std::min(k, k0 + kBlock);
    const bool load_y = accumulate || k0 > 0;
    int64_t col = 0;
    for (; col + 8 * kNR <= n; col += 8 * kNR)
      panel<kMR, kNR>(lhs, lhs_row, lhs_step, rhs, rhs_stride, y, y_stride, m, col, k0, k1, load_y, all);
    const int64_t rest = n - col;
    if (rest == 0) continue;
    if (rest > 8)
      panel<kMR, 2>(lhs, lhs_row, lhs_step, rhs, rhs_stride, y, y_stride, m, col, k0, k1, load_y, tail_mask8(rest - 8));
    else
      panel<kMR, 1>(lhs, lhs_row, lhs_step, rhs, rhs_stride, y, y_stride, m, col, k0, k1, load_y, tail_mask8(rest));
  }
}

}  // namespace

// X·W: the left operand is X (row i, step k at x[i * x_stride + k]).
void gemm_nn_f32(const GemmNNArgs& a) {
  drive(a.x, a.x_stride, 1, a.w, a.w_stride, a.y, a.y_stride, a.m, a.n, a.k, a.accumulate);
}

// Aᵀ·B: the left operand is Aᵀ (row i, step r at a[r * a_stride + i]).
void gemm_tn_f32(const GemmTNArgs& a) {
  drive(a.a, 1, a.a_stride, a.b, a.b_stride, a.y, a.y_stride, a.m, a.n, a.k, a.accumulate);
}

void silu_mul_backward(const float* gate, const float* up, const float* d_out, float* d_gate, float* d_up, int64_t n) {
  const __m256 one = _mm256_set1_ps(1.0f);
  for (int64_t i = 0; i < n; i += 8) {
    const __m256i m = tail_mask8(n - i);
    const __m256 g = _mm256_maskload_ps(gate + i, m);
    const __m256 u = _mm256_maskload_ps(up + i, m);
    const __m256 d = _mm256_maskload_ps(d_out + i, m);
    const __m256 sigmoid = _mm256_div_ps(one, _mm256_add_ps(one, exp(_mm256_sub_ps(_mm256_setzero_ps(), g))));
    const __m256 silu = _mm256_mul_ps(g, sigmoid);
    // silu'(g) = sigmoid * (1 + g * (1 - sigmoid))
    const __m256 dsilu = _mm256_mul_ps(sigmoid, _mm256_add_ps(one, _mm256_mul_ps(g, _mm256_sub_ps(one, sigmoid))));
    _mm256_maskstore_ps(d_gate + i, m, _mm256_mul_ps(_mm256_mul_ps(d, u), dsilu));
    _mm256_maskstore_ps(d_up + i, m, _mm256_mul_ps(d, silu));
  }
}

}  // namespace frugal::kernels::avx2
