// The training kernels (X·W, Aᵀ·B, silu_mul's gradient) of every ISA table this CPU supports,
// against exact double-precision results, on random data with awkward sizes; and the property
// training's exact resume depends on: a product split into pieces (rows, column ranges)
// gives bit-identical results to the whole product.
#include <gtest/gtest.h>

#include <cmath>
#include <tuple>
#include <vector>

#include "kernels/kernels.h"
#include "support/test_support.h"

namespace frugal::kernels {
namespace {

class GradKernelTest : public ::testing::TestWithParam<Isa> {
 protected:
  const KernelTable& table() const { return for_isa(GetParam()); }
};

std::string isa_label(const ::testing::TestParamInfo<Isa>& info) { return isa_name(info.param); }

using Shape = std::tuple<int64_t, int64_t, int64_t>;
const Shape kShapes[] = {{1, 1, 1}, {1, 17, 5}, {7, 64, 300}, {13, 70, 33}, {6, 130, 257}, {25, 8, 512}, {3, 49, 1}};

TEST_P(GradKernelTest, NNMatchesExactProduct) {
  for (auto [m, n, k] : kShapes) {
    for (bool accumulate : {false, true}) {
      // Strides wider than the rows: the kernels must honour them.
      const int64_t xs = k + 3, ws = n + 5, ys = n + 2;
      const auto x = test::random_floats(m * xs, 1 + m);
      const auto w = test::random_floats(k * ws, 2 + n);
      auto y = test::random_floats(m * ys, 3 + k);
      const auto y0 = y;
      GemmNNArgs a{x.data(), xs, w.data(), ws, y.data(), ys, m, n, k, accumulate};
      table().gemm_nn_f32(a);
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) {
          double exact = accumulate ? y0[i * ys + j] : 0.0, magnitude = std::abs(exact);
          for (int64_t r = 0; r < k; ++r) {
            exact += double(x[i * xs + r]) * w[r * ws + j];
            magnitude += std::abs(double(x[i * xs + r]) * w[r * ws + j]);
          }
          ASSERT_NEAR(y[i * ys + j], exact, 1e-5 * magnitude + 1e-6) << m << "x" << n << "x" << k << " at " << i << "," << j;
        }
      // Padding between rows is never written.
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = n; j < ys; ++j) ASSERT_EQ(y[i * ys + j], y0[i * ys + j]);
    }
  }
}

TEST_P(GradKernelTest, TNMatchesExactProduct) {
  for (auto [m, n, k] : kShapes) {
    for (bool accumulate : {false, true}) {
      const int64_t as = m + 3, bs = n + 1, ys = n + 4;
      const auto A = test::random_floats(k * as, 4 + m);
      const auto B = test::random_floats(k * bs, 5 + n);
      auto y = test::random_floats(m * ys, 6 + k);
      const auto y0 = y;
      GemmTNArgs a{A.data(), as, B.data(), bs, y.data(), ys, m, n, k, accumulate};
      table().gemm_tn_f32(a);
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) {
          double exact = accumulate ? y0[i * ys + j] : 0.0, magnitude = std::abs(exact);
          for (int64_t r = 0; r < k; ++r) {
            exact += double(A[r * as + i]) * B[r * bs + j];
            magnitude += std::abs(double(A[r * as + i]) * B[r * bs + j]);
          }
          ASSERT_NEAR(y[i * ys + j], exact, 1e-5 * magnitude + 1e-6) << m << "x" << n << "x" << k << " at " << i << "," << j;
        }
    }
  }
}

TEST_P(GradKernelTest, SplitsGiveBitIdenticalResults) {
  const int64_t m = 23, n = 150, k = 600;  // k spans several reduction blocks
  const auto x = test::random_floats(m * k, 7);
  const auto w = test::random_floats(k * n, 8);
  std::vector<float> whole(m * n), pieces(m * n);
  table().gemm_nn_f32({x.data(), k, w.data(), n, whole.data(), n, m, n, k, false});
  // Rows in uneven groups, columns in uneven ranges, each its own call.
  for (int64_t r0 = 0; r0 < m; r0 += 5)
    for (int64_t c0 = 0; c0 < n; c0 += 37) {
      const int64_t rows = std::min<int64_t>(5, m - r0), cols = std::min<int64_t>(37, n - c0);
      table().gemm_nn_f32({x.data() + r0 * k, k, w.data() + c0, n, pieces.data() + r0 * n + c0, n, rows, cols, k, false});
    }
  ASSERT_EQ(whole, pieces);

  // Aᵀ·B: [m=n_a, n] over k rows, split by output rows and columns.
  const auto A = test::random_floats(k * m, 9);
  std::vector<float> tn_whole(m * n), tn_pieces(m * n);
  table().gemm_tn_f32({A.data(), m, w.data(), n, tn_whole.data(), n, m, n, k, false});
  for (int64_t i0 = 0; i0 < m; i0 += 4)
    for (int64_t c0 = 0; c0 < n; c0 += 50) {
      const int64_t rows = std::min<int64_t>(4, m - i0), cols = std::min<int64_t>(50, n - c0);
      table().gemm_tn_f32({A.data() + i0, m, w.data() + c0, n, tn_pieces.data() + i0 * n + c0, n, rows, cols, k, false});
    }
  ASSERT_EQ(tn_whole, tn_pieces);
}

TEST_P(GradKernelTest, SiluMulBackwardMatchesExactDerivative) {
  const int64_t n = 1000 + 7;
  auto gate = test::random_floats(n, 10, 8.0f);
  const auto up = test::random_floats(n, 11);
  const auto d = test::random_floats(n, 12);
  gate[0] = 0.0f, gate[1] = 30.0f, gate[2] = -30.0f, gate[3] = -90.0f;
  std::vector<float> dg(n), du(n);
  table().silu_mul_backward(gate.data(), up.data(), d.data(), dg.data(), du.data(), n);
  for (int64_t i = 0; i < n; ++i) {
    const double g = gate[i], s = 1.0 / (1.0 + std::exp(-g));
    const double exact_dg = double(d[i]) * up[i] * s * (1.0 + g * (1.0 - s));
    const double exact_du = double(d[i]) * g * s;
    ASSERT_NEAR(dg[i], exact_dg, 1e-6 * (std::abs(exact_dg) + std::abs(double(d[i]) * up[i])) + 1e-30) << "at " << i;
    ASSERT_NEAR(du[i], exact_du, 1e-6 * std::abs(exact_du) + 1e-30) << "at " << i;
  }
  // In place: gradients written over gate and up.
  auto g2 = gate, u2 = up;
  table().silu_mul_backward(g2.data(), u2.data(), d.data(), g2.data(), u2.data(), n);
  ASSERT_EQ(g2, dg);
  ASSERT_EQ(u2, du);
}

INSTANTIATE_TEST_SUITE_P(Isas, GradKernelTest, ::testing::ValuesIn(available_isas()), isa_label);

}  // namespace
}  // namespace frugal::kernels
