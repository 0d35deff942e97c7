// Every kernel of every ISA table this CPU supports, against the scalar reference (the spec)
// or an exact double-precision computation, on random data with awkward sizes (tails).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "core/buffer.h"
#include "core/half.h"
#include "kernels/kernels.h"
#include "kernels/ref/ref_kernels.h"
#include "quant/formats/blocks.h"
#include "support/test_support.h"
#include "unit/gemm_test_util.h"

namespace frugal::kernels {
namespace {

class KernelTest : public ::testing::TestWithParam<Isa> {
 protected:
  const KernelTable& table() const { return for_isa(GetParam()); }
};

std::string isa_label(const ::testing::TestParamInfo<Isa>& info) { return isa_name(info.param); }

// Weights of `type` made from random floats, the floats they dequantize to, and the
// activations as the kernel will see them (converted to its activation type and back).
struct GemmCase {
  Buffer w;
  std::vector<float> w_float;
  std::vector<float> x;
  int64_t m, n, k;
};

GemmCase make_case(DType type, int64_t m, int64_t n, int64_t k, uint32_t seed) {
  GemmCase c{Buffer(row_bytes(type, k) * n), {}, test::random_floats(m * k, seed), m, n, k};
  const auto w = test::random_floats(n * k, seed + 1, 0.5f);
  const DTypeTraits& t = dtype_traits(type);
  c.w_float.resize(n * k);
  for (int64_t r = 0; r < n; ++r) {
    t.from_float(w.data() + r * k, c.w.as<uint8_t>() + r * row_bytes(type, k), k);
    t.to_float(c.w.as<uint8_t>() + r * row_bytes(type, k), c.w_float.data() + r * k, k);
  }
  return c;
}

// The table's product over a case (tests/unit/gemm_test_util.h), w8a8 for the W8A8 kernel.
test_util::GemmRun run_gemm(const KernelTable& t, DType type, const GemmCase& c, int64_t split, bool w8a8 = false) {
  return test_util::run_gemm(t, type, c.x, c.m, c.k, c.w.data(), row_bytes(type, c.k), c.n, split, w8a8);
}

TEST_P(KernelTest, GemmMatchesExactProductForEveryWeightType) {
  for (DType type : {DType::kF32, DType::kF16, DType::kBF16, DType::kQ8_0, DType::kQ4_0, DType::kQ4_1}) {
    const int64_t block = dtype_traits(type).block_size;
    for (auto [m, n, k] : {std::tuple<int64_t, int64_t, int64_t>{1, 13, 64}, {3, 7, 96}, {5, 20, 160}, {9, 11, 288}, {17, 6, 32}}) {
      if (k % block) continue;
      if (block == 1) k += 3;  // float types: a k that is no multiple of any vector width
      const GemmCase c = make_case(type, m, n, k, 7 * m + n);
      const test_util::GemmRun r = run_gemm(table(), type, c, 5);
      const auto& y = r.y;
      const auto& xs = r.x_seen;
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) {
          double exact = 0, magnitude = 0;
          for (int64_t kk = 0; kk < k; ++kk) {
            exact += double(xs[i * k + kk]) * c.w_float[j * k + kk];
            magnitude += std::abs(double(xs[i * k + kk]) * c.w_float[j * k + kk]);
          }
          // f32 accumulation: a few ulps of the sum of magnitudes.
          ASSERT_NEAR(y[i * n + j], exact, 1e-5 * magnitude + 1e-6)
              << dtype_name(type) << " m=" << m << " n=" << n << " k=" << k << " at (" << i << "," << j << ")";
        }
    }
  }
}

TEST_P(KernelTest, GemmResultsDoNotDependOnBatchOrSplit) {
  for (DType type : {DType::kF32, DType::kF16, DType::kBF16, DType::kQ8_0, DType::kQ4_0, DType::kQ4_1}) {
    // 256: whole vectors and an even number of blocks; then a float k with a vector tail, and
    // a quantized k with an odd number of blocks.
    const bool is_float = dtype_traits(type).block_size == 1;
    for (int64_t k : {int64_t{256}, is_float ? int64_t{227} : int64_t{224}}) {
      const GemmCase big = make_case(type, 11, 37, k, 99);
      const auto all = run_gemm(table(), type, big, 37).y;
      const auto split = run_gemm(table(), type, big, 3).y;
      for (int64_t r = 0; r < big.m; ++r) {
        GemmCase one{big.w.copy(), big.w_float, std::vector<float>(big.x.begin() + r * big.k, big.x.begin() + (r + 1) * big.k), 1, big.n, big.k};
        const auto alone = run_gemm(table(), type, one, 37).y;
        for (int64_t j = 0; j < big.n; ++j) {
          ASSERT_EQ(all[r * big.n + j], alone[j]) << dtype_name(type) << " k=" << k << ": row " << r << " differs alone and batched";
          ASSERT_EQ(all[r * big.n + j], split[r * big.n + j]) << dtype_name(type) << " k=" << k << ": column split changes the result";
        }
      }
    }
  }
}

// Every ISA gives the reference's bits (the dot product is an exact integer), which equal the
// exact product of the dequantized operands up to the final float rounding; batching and
// column splits change nothing.
TEST_P(KernelTest, W8A8MatchesReferenceBitForBit) {
  const GemmKernel kernel = table().w8a8_int8_row;
  ASSERT_NE(kernel.fn, nullptr);
  ASSERT_EQ(kernel.act, DType::kInt8RowAct);
  const ConvertFn convert = table().convert[static_cast<size_t>(DType::kInt8RowAct)];
  const ConvertFn ref_convert = dtype_traits(DType::kInt8RowAct).from_float;
  for (auto [m, n, k] : {std::tuple<int64_t, int64_t, int64_t>{1, 13, 256}, {3, 7, 320}, {5, 21, 576}, {17, 9, 1536}, {6, 10, 4864}}) {
    GemmCase c = make_case(DType::kInt8Row, m, n, k, 11 * m + n);
    for (int64_t r = 0; r < m; ++r) c.x[r * k + 5] *= 20.0f;  // an outlier channel, as real activations have
    {  // the table's conversion writes the reference's bytes
      const size_t bytes = row_bytes(DType::kInt8RowAct, k);
      Buffer a(bytes), b(bytes);
      convert(c.x.data(), a.data(), k);
      ref_convert(c.x.data(), b.data(), k);
      ASSERT_EQ(std::memcmp(a.data(), b.data(), bytes), 0) << "int8_row_act conversion, k=" << k;
    }
    const auto y = run_gemm(table(), DType::kInt8Row, c, 5, /*w8a8=*/true).y;
    const auto y_ref = run_gemm(for_isa(Isa::kScalar), DType::kInt8Row, c, c.n, /*w8a8=*/true).y;
    Buffer xq(row_bytes(DType::kInt8RowAct, k));
    std::vector<float> xs(k);
    for (int64_t i = 0; i < m; ++i) {
      ref_convert(c.x.data() + i * k, xq.data(), k);
      dtype_traits(DType::kInt8RowAct).to_float(xq.data(), xs.data(), k);
      for (int64_t kk = 0; kk < k; ++kk)  // per-token int8: within half a step of the input
        ASSERT_LE(std::abs(xs[kk] - c.x[i * k + kk]), 0.5001f * xq.as<float>()[0]) << "k=" << k << " element " << kk;
      for (int64_t j = 0; j < n; ++j) {
        ASSERT_EQ(y[i * n + j], y_ref[i * n + j]) << "k=" << k << " at (" << i << "," << j << ")";
        double exact = 0, magnitude = 0;
        for (int64_t kk = 0; kk < k; ++kk) {
          exact += double(xs[kk]) * c.w_float[j * k + kk];
          magnitude += std::abs(double(xs[kk]) * c.w_float[j * k + kk]);
        }
        ASSERT_NEAR(y_ref[i * n + j], exact, 1e-6 * magnitude + 1e-7) << "reference, k=" << k << " at (" << i << "," << j << ")";
      }
    }
    for (int64_t r = 0; r < m; ++r) {
      GemmCase one{c.w.copy(), c.w_float, std::vector<float>(c.x.begin() + r * k, c.x.begin() + (r + 1) * k), 1, n, k};
      const auto alone = run_gemm(table(), DType::kInt8Row, one, 3, /*w8a8=*/true).y;
      for (int64_t j = 0; j < n; ++j) ASSERT_EQ(alone[j], y[r * n + j]) << "k=" << k << ": row " << r << " differs alone and batched";
    }
  }
}

// The largest integer sums a row can meet: every code at +-127 with the signs lined up, k =
// 4864 (Qwen2.5-0.5B's down projection): no int16 pair saturates and no int32 lane overflows.
TEST_P(KernelTest, W8A8ExtremeCodesStayExact) {
  const int64_t k = 4864, n = 3;
  GemmCase c = make_case(DType::kInt8Row, 2, n, k, 5);
  for (int64_t kk = 0; kk < k; ++kk) {
    c.x[kk] = kk % 3 == 0 ? -1.0f : 1.0f;
    c.x[k + kk] = -c.x[kk];
  }
  std::vector<float> w(k);
  for (int64_t j = 0; j < n; ++j) {
    for (int64_t kk = 0; kk < k; ++kk) w[kk] = c.x[kk] * (j == 1 ? -1.0f : 1.0f);
    dtype_traits(DType::kInt8Row).from_float(w.data(), c.w.as<uint8_t>() + j * row_bytes(DType::kInt8Row, k), k);
  }
  const auto y = run_gemm(table(), DType::kInt8Row, c, n, /*w8a8=*/true).y;
  // Scales 1/127 on both sides: each product is exactly 127 * 127 / 127^2 = 1 in magnitude.
  for (int64_t j = 0; j < n; ++j) {
    const float sign = j == 1 ? -1.0f : 1.0f;
    EXPECT_FLOAT_EQ(y[j], sign * k) << "column " << j;
    EXPECT_FLOAT_EQ(y[n + j], -sign * k) << "column " << j << ", negated activations";
  }
}

// Quants at the ends of their ranges, with activations of +-127 whose signs line up with the
// weights', so neighbouring products add up to the largest pair sums an integer dot product can
// meet (vpmaddubsw saturates pair sums at 32767: an offset form of Q8_0 would break here). Q8_0
// also gets -128, which its quantizer never writes but a file may hold.
TEST_P(KernelTest, QuantGemmHandlesExtremeQuants) {
  const int64_t k = 96, n = 5, m = 2;
  for (DType type : {DType::kQ8_0, DType::kQ4_0, DType::kQ4_1}) {
    GemmCase c{Buffer(row_bytes(type, k) * n), std::vector<float>(n * k), std::vector<float>(m * k), m, n, k};
    for (int64_t r = 0; r < n; ++r) {
      auto* row = c.w.as<uint8_t>() + r * row_bytes(type, k);
      for (int64_t b = 0; b < k / kQK; ++b) {
        const uint16_t d = f32_to_f16(0.01f * (r + 1)), min = f32_to_f16(-0.05f * (b + 1));
        if (type == DType::kQ8_0) {
          auto& blk = reinterpret_cast<BlockQ8_0*>(row)[b];
          blk.d = d;
          for (int j = 0; j < kQK; ++j) blk.qs[j] = static_cast<int8_t>((j + r + b) % 3 == 0 ? -128 : ((j + r) % 2 ? 127 : -127));
        } else if (type == DType::kQ4_0) {
          auto& blk = reinterpret_cast<BlockQ4_0*>(row)[b];
          blk.d = d;
          for (int j = 0; j < kQK / 2; ++j) blk.qs[j] = (j + r) % 4 == 0 ? 0x0F : 0xF0 | ((j + b) % 2 ? 0x0F : 0x00);
        } else {
          auto& blk = reinterpret_cast<BlockQ4_1*>(row)[b];
          blk.d = d;
          blk.m = min;
          for (int j = 0; j < kQK / 2; ++j) blk.qs[j] = (j + r) % 3 == 0 ? 0x00 : 0xFF;
        }
      }
      dtype_traits(type).to_float(row, c.w_float.data() + r * k, k);
    }
    // Row 0: x = sign(w of weight row 0) so products add; row 1: the opposite signs.
    for (int64_t kk = 0; kk < k; ++kk) {
      const float w0 = c.w_float[kk];
      const float sign = type == DType::kQ8_0 ? (w0 < 0 ? -1.0f : 1.0f) : 1.0f;
      c.x[kk] = sign;
      c.x[k + kk] = -sign;
    }
    const test_util::GemmRun r = run_gemm(table(), type, c, 2);
    const auto& y = r.y;
    const auto& xs = r.x_seen;
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double exact = 0, magnitude = 0;
        for (int64_t kk = 0; kk < k; ++kk) {
          exact += double(xs[i * k + kk]) * c.w_float[j * k + kk];
          magnitude += std::abs(double(xs[i * k + kk]) * c.w_float[j * k + kk]);
        }
        ASSERT_NEAR(y[i * n + j], exact, 1e-5 * magnitude + 1e-6) << dtype_name(type) << " at (" << i << "," << j << ") y=" << y[i * n + j] << " exact=" << exact;
      }
  }
}

TEST_P(KernelTest, RowKernelsMatchReference) {
  for (int64_t n : {1, 7, 8, 9, 15, 16, 17, 33, 100, 576}) {
    auto x = test::random_floats(n, n, 2.0f);
    auto w = test::random_floats(n, n + 1);
    std::vector<float> y(n), y_ref(n);
    table().rms_norm(x.data(), w.data(), y.data(), n, 1e-5f);
    ref::rms_norm(x.data(), w.data(), y_ref.data(), n, 1e-5f);
    for (int64_t i = 0; i < n; ++i) ASSERT_NEAR(y[i], y_ref[i], 1e-5f * (1 + std::abs(y_ref[i]))) << "rms_norm n=" << n;

    table().silu_mul(x.data(), w.data(), y.data(), n);
    ref::silu_mul(x.data(), w.data(), y_ref.data(), n);
    for (int64_t i = 0; i < n; ++i) ASSERT_NEAR(y[i], y_ref[i], 1e-6f * (1 + std::abs(y_ref[i]))) << "silu_mul n=" << n;

    y = x;
    y_ref = x;
    table().add(y.data(), w.data(), n);
    ref::add(y_ref.data(), w.data(), n);
    ASSERT_EQ(y, y_ref);

    auto logits = test::random_floats(n, n + 2, 5.0f);
    auto probs = logits, probs_ref = logits;
    table().softmax(probs.data(), n);
    ref::softmax(probs_ref.data(), n);
    for (int64_t i = 0; i < n; ++i) ASSERT_NEAR(probs[i], probs_ref[i], 1e-6f) << "softmax n=" << n;
  }
}

// argmax: the first index of the maximum over every length and position (tails, ties), NaNs
// never winning, and the degenerate rows (all -inf, all NaN).
TEST_P(KernelTest, ArgmaxFindsTheFirstLargestValue) {
  for (int64_t n : {1, 7, 8, 15, 16, 17, 63, 64, 65, 100, 1000, 49152 + 5}) {
    auto x = test::random_floats(n, static_cast<uint32_t>(n), 3.0f);
    ASSERT_EQ(table().argmax(x.data(), n), ref::argmax(x.data(), n)) << "n=" << n;
    for (int64_t at : {int64_t{0}, n / 3, n - 1}) {
      auto y = x;
      y[at] = 100.0f;
      ASSERT_EQ(table().argmax(y.data(), n), at) << "n=" << n << " at=" << at;
      if (at + 1 < n) {
        y[n - 1] = 100.0f;  // a tie after it: the first still wins
        ASSERT_EQ(table().argmax(y.data(), n), at) << "tie n=" << n << " at=" << at;
      }
      y[at] = std::numeric_limits<float>::quiet_NaN();  // NaN is skipped, the later 100 wins
      if (at + 1 < n) {
        ASSERT_EQ(table().argmax(y.data(), n), n - 1) << "NaN n=" << n << " at=" << at;
      }
    }
  }
  std::vector<float> low(37, -INFINITY), nan(37, std::numeric_limits<float>::quiet_NaN());
  EXPECT_EQ(table().argmax(low.data(), 37), 0);
  EXPECT_EQ(table().argmax(nan.data(), 37), 0);
  nan[20] = -INFINITY;
  EXPECT_EQ(table().argmax(nan.data(), 37), 20);
  EXPECT_EQ(ref::argmax(nan.data(), 37), 20);
}

TEST_P(KernelTest, ExtremeSoftmaxAndSiluInputsStayFinite) {
  std::vector<float> x = {-1e30f, -100.f, 0.f, 80.f, 100.f, 1e30f, -INFINITY};
  std::vector<float> up(x.size(), 1.0f), out(x.size());
  table().silu_mul(x.data(), up.data(), out.data(), static_cast<int64_t>(x.size()));
  EXPECT_EQ(out[0], 0.0f);
  EXPECT_NEAR(out[4], 100.f, 1e-3f);
  std::vector<float> s = {1e4f, 0.f, -INFINITY, 1e4f};
  table().softmax(s.data(), 4);
  EXPECT_NEAR(s[0], 0.5f, 1e-6f);
  EXPECT_EQ(s[2], 0.0f);
}

// softmax({0, x}) for x <= -20 is e^x exactly as the kernel computes it (the denominator rounds
// to 1), which checks the vector exp against libm's to within 2 ulps, through the denormals
// (there to one denormal step) and down to the underflow to 0.
TEST_P(KernelTest, SoftmaxExpIsAccurateDownToUnderflow) {
  auto ulps = [](float a, float b) {
    int32_t ia, ib;
    std::memcpy(&ia, &a, 4);
    std::memcpy(&ib, &b, 4);
    return std::abs(int64_t{ia} - int64_t{ib});
  };
  for (float x = -110.0f; x <= -20.0f; x += 0.0731f) {
    float s[2] = {0.0f, x};
    table().softmax(s, 2);
    const float want = std::exp(x);
    ASSERT_EQ(s[0], 1.0f);
    if (want >= std::numeric_limits<float>::min()) ASSERT_LE(ulps(s[1], want), 2) << "e^" << x;
    else ASSERT_LE(ulps(s[1], want), 1) << "e^" << x << " (denormal)";
  }
  float s[2] = {0.0f, -103.9f};
  table().softmax(s, 2);
  EXPECT_EQ(s[1], std::numeric_limits<float>::denorm_min());  // e^-103.9 = 7.5e-46: rounds up to it
  float t[2] = {0.0f, -104.0f};  // e^-104 = 6.8e-46: below half of it, rounds to 0
  table().softmax(t, 2);
  EXPECT_EQ(t[1], 0.0f);
}

// silu over the range where e^-g overflows (g < -88.7) and where it underflows.
TEST_P(KernelTest, SiluMatchesReferenceOverTheWholeRange) {
  std::vector<float> g, up;
  for (float v = -120.0f; v <= 120.0f; v += 0.377f) {
    g.push_back(v);
    up.push_back(1.0f + 0.001f * v);
  }
  std::vector<float> y(g.size()), y_ref(g.size());
  table().silu_mul(g.data(), up.data(), y.data(), static_cast<int64_t>(g.size()));
  ref::silu_mul(g.data(), up.data(), y_ref.data(), static_cast<int64_t>(g.size()));
  for (size_t i = 0; i < g.size(); ++i) ASSERT_NEAR(y[i], y_ref[i], 1e-6f * std::abs(y_ref[i]) + 1e-37f) << "silu(" << g[i] << ")";
}

TEST_P(KernelTest, RopeMatchesReferenceInBothPairings) {
  for (bool interleaved : {false, true}) {
    for (int64_t hd : {32, 64, 80, 128}) {
      const int64_t n_head = 3, n_rot = hd;
      auto x = test::random_floats(n_head * hd, hd);
      std::vector<float> cos(n_rot / 2), sin(n_rot / 2);
      for (int64_t i = 0; i < n_rot / 2; ++i) {
        cos[i] = std::cos(0.37f * (i + 1));
        sin[i] = std::sin(0.37f * (i + 1));
      }
      auto y = x, y_ref = x;
      table().rope(y.data(), n_head, hd, n_rot, cos.data(), sin.data(), interleaved);
      ref::rope(y_ref.data(), n_head, hd, n_rot, cos.data(), sin.data(), interleaved);
      for (size_t i = 0; i < y.size(); ++i) ASSERT_NEAR(y[i], y_ref[i], 1e-5f) << "interleaved=" << interleaved << " hd=" << hd;
    }
  }
}

TEST_P(KernelTest, ConversionsMatchReference) {
  const auto x = test::random_floats(1000, 3, 10.0f);
  for (DType type : {DType::kF16, DType::kBF16, DType::kQ8_0, DType::kQ8Act}) {
    const size_t bytes = row_bytes(type, 992);
    Buffer a(bytes), b(bytes);
    table().convert[static_cast<size_t>(type)](x.data(), a.data(), 992);
    dtype_traits(type).from_float(x.data(), b.data(), 992);
    EXPECT_EQ(std::memcmp(a.data(), b.data(), bytes), 0) << "convert to " << dtype_name(type);
    std::vector<float> fa(992), fb(992);
    table().to_float[static_cast<size_t>(type)](a.data(), fa.data(), 992);
    dtype_traits(type).to_float(a.data(), fb.data(), 992);
    EXPECT_EQ(fa, fb) << "to_float of " << dtype_name(type);
  }
}

// Every length up to a few vectors (tails), and nothing written past the end.
TEST_P(KernelTest, HalfConversionsHandleEveryLength) {
  const auto x = test::random_floats(48, 11, 100.0f);
  for (DType type : {DType::kF16, DType::kBF16}) {
    for (int64_t n = 0; n <= 40; ++n) {
      std::vector<uint16_t> a(n + 8, 0xABCD), b(n + 8, 0xABCD);
      table().convert[static_cast<size_t>(type)](x.data(), a.data(), n);
      dtype_traits(type).from_float(x.data(), b.data(), n);
      ASSERT_EQ(a, b) << "convert to " << dtype_name(type) << " n=" << n;
      std::vector<float> fa(n + 8, -7.0f), fb(n + 8, -7.0f);
      table().to_float[static_cast<size_t>(type)](a.data(), fa.data(), n);
      dtype_traits(type).to_float(a.data(), fb.data(), n);
      ASSERT_EQ(std::memcmp(fa.data(), fb.data(), fa.size() * sizeof(float)), 0) << "to_float of " << dtype_name(type) << " n=" << n;
    }
  }
}

// bf16 rounding at its edges: ties to even, carries into the exponent, overflow to infinity,
// denormals, signed zeros, and NaNs of every kind kept NaN (quiet) with their top bits.
TEST_P(KernelTest, Bf16ConversionRoundsAndKeepsNaNsAsTheReference) {
  const std::vector<uint32_t> bits = {
      0x3f808000, 0x3f818000, 0x3f807fff, 0x3f808001, 0xbf808000, 0xbf818000,  // ties and neighbours
      0x3fffffff, 0x3f7fffff, 0x7f7f8000, 0x7f7fffff, 0xff7fffff, 0x7f7f7fff,  // carries, overflow
      0x7f800000, 0xff800000, 0x00000000, 0x80000000,                          // infinities, zeros
      0x00000001, 0x00008000, 0x00018000, 0x807fffff, 0x00800000,              // denormals
      0x7fc00000, 0xffc00000, 0x7f800001, 0xff800001, 0x7fbfffff, 0x7fffffff,  // NaNs, quiet and signalling
      0x7f810000, 0xffff0000, 0x12345678, 0x9abcdef0, 0x40490fdb, 0xc0490fdb};
  std::vector<float> x(bits.size());
  std::memcpy(x.data(), bits.data(), bits.size() * sizeof(float));
  std::vector<uint16_t> got(bits.size());
  table().convert[static_cast<size_t>(DType::kBF16)](x.data(), got.data(), static_cast<int64_t>(x.size()));
  for (size_t i = 0; i < bits.size(); ++i) {
    const bool denormal = (bits[i] & 0x7f800000u) == 0 && (bits[i] & 0x007fffffu) != 0;
    // AVX512-BF16's vcvtneps2bf16 always treats denormal inputs as zero (it ignores MXCSR's
    // DAZ/FTZ): a known deviation of that table's kernel, allowed here and nowhere else.
    if (denormal && GetParam() == Isa::kAvx512 && got[i] == (bits[i] >> 16 & 0x8000u)) continue;
    EXPECT_EQ(got[i], f32_to_bf16(x[i])) << std::hex << "bf16 of 0x" << bits[i];
  }
  // Spot checks of the reference itself, so that both cannot drift together.
  EXPECT_EQ(f32_to_bf16(x[0]), 0x3f80);  // tie, down to even
  EXPECT_EQ(f32_to_bf16(x[1]), 0x3f82);  // tie, up to even
  EXPECT_EQ(f32_to_bf16(x[9]), 0x7f80);  // overflow to infinity
  EXPECT_EQ(f32_to_bf16(x[23]), 0x7fc0);  // signalling NaN made quiet
}

// q8_act must equal the reference quantizer byte for byte: exact halves (roundf rounds them
// away from zero), zero blocks, a negative maximum, and scales that underflow or overflow f16
// (the quants use the unrounded scale). The edge cases come again after the first 16 blocks,
// so that each of the AVX-512 kernel's groups meets some: 16 (blocks 0-15), 8 (16-23),
// 4 (24-27), 2 (28, 29) and 1 (30, the underflowing scale).
TEST_P(KernelTest, Q8ActConversionMatchesReferenceOnEdgeCases) {
  std::vector<float> x;
  // amax 127: d = 1, so these are exact ties at every magnitude.
  for (int j = 0; j < kQK; ++j) x.push_back(j == 0 ? 127.0f : (j % 2 ? 1.0f : -1.0f) * (0.5f + 4 * j));
  // amax 15.875 = 127 / 8: d = 1/8, ties at multiples of 1/16.
  for (int j = 0; j < kQK; ++j) x.push_back(j == 5 ? -15.875f : (j - 16 + 0.5f) * 0.125f);
  for (int j = 0; j < kQK; ++j) x.push_back(j % 3 ? 0.0f : -0.0f);                       // all zeros
  for (int j = 0; j < kQK; ++j) x.push_back(j == 7 ? -3.0f : 0.01f * (j - 15));          // negative maximum
  for (int j = 0; j < kQK; ++j) x.push_back(1e-30f * (j - 11));                          // f16 scale underflows
  for (int j = 0; j < kQK; ++j) x.push_back(1e30f * (j % 5 - 2) + (j == 3 ? 0.5f : 0.0f));  // f16 scale overflows
  for (int j = 0; j < kQK; ++j) x.push_back(0.49999997f * (j % 2 ? 1 : -1) + (j == 0 ? 126.5f : 0.0f));
  const auto r = test::random_floats(3 * kQK, 5, 3.0f);
  x.insert(x.end(), r.begin(), r.end());
  const std::vector<float> edges = x;
  const auto more = test::random_floats(6 * kQK, 6, 40.0f);
  x.insert(x.end(), more.begin(), more.end());
  x.insert(x.end(), edges.begin(), edges.end());
  x.insert(x.end(), edges.begin(), edges.begin() + 5 * kQK);
  constexpr size_t kBlocks = 31;
  const int64_t n = static_cast<int64_t>(x.size());
  const size_t bytes = row_bytes(DType::kQ8Act, n);
  ASSERT_EQ(bytes, kBlocks * sizeof(BlockQ8Act));
  std::vector<uint8_t> a(bytes + 8, 0x5A), b(bytes + 8, 0x5A);
  table().convert[static_cast<size_t>(DType::kQ8Act)](x.data(), a.data(), n);
  dtype_traits(DType::kQ8Act).from_float(x.data(), b.data(), n);
  for (size_t blk = 0; blk < kBlocks; ++blk)
    EXPECT_EQ(std::memcmp(a.data() + blk * sizeof(BlockQ8Act), b.data() + blk * sizeof(BlockQ8Act), sizeof(BlockQ8Act)), 0)
        << "q8_act block " << blk;
  EXPECT_EQ(a, b) << "bytes past the last block were written";
  // The reference itself on the first block: 4j + 0.5 rounds away from zero.
  const auto* first = reinterpret_cast<const BlockQ8Act*>(b.data());
  EXPECT_EQ(first->qs[1], 5);
  EXPECT_EQ(first->qs[2], -9);
}

// An infinite activation makes its block's scale infinite and its codes NaN times zero; the
// result is garbage, but a block's sum must still be the sum of its stored codes, which the
// integer products' offsets subtract. Every group size of the AVX-512 kernel and the tail.
TEST_P(KernelTest, Q8ActSumIsTheStoredCodesSumWithInfiniteInputs) {
  for (int64_t blocks : {1, 4, 8, 16, 29}) {
    std::vector<float> x = test::random_floats(blocks * kQK, 9, 2.0f);
    for (int64_t b = 0; b < blocks; b += 3) x[b * kQK + b % kQK] = (b % 2 ? -1 : 1) * std::numeric_limits<float>::infinity();
    std::vector<BlockQ8Act> q(blocks);
    table().convert[static_cast<size_t>(DType::kQ8Act)](x.data(), q.data(), blocks * kQK);
    for (int64_t b = 0; b < blocks; ++b) {
      int sum = 0;
      for (int8_t v : q[b].qs) sum += v;
      EXPECT_EQ(q[b].sum, sum) << blocks << " blocks, block " << b;
    }
  }
}

// A block holding a NaN gets a NaN scale (the reference and every kernel), so that products
// with it are NaN: Q8_0's quantizer alone codes a NaN as -128 or 0, finite garbage that hid
// broken weights. Every group size of the AVX-512 kernel, and NaNs in either half of a block.
TEST_P(KernelTest, Q8ActBlockHoldingANaNHasANaNScale) {
  for (int64_t blocks : {1, 2, 4, 8, 16, 31}) {
    std::vector<float> x = test::random_floats(blocks * kQK, 10, 2.0f);
    for (int64_t b = 1; b < blocks; b += 2) x[b * kQK + (b * 7) % kQK] = std::numeric_limits<float>::quiet_NaN();
    if (blocks == 1) x.assign(kQK, std::numeric_limits<float>::quiet_NaN());  // all NaN: amax 0 before
    std::vector<BlockQ8Act> got(blocks), want(blocks);
    table().convert[static_cast<size_t>(DType::kQ8Act)](x.data(), got.data(), blocks * kQK);
    dtype_traits(DType::kQ8Act).from_float(x.data(), want.data(), blocks * kQK);
    for (int64_t b = 0; b < blocks; ++b) {
      const bool nan = blocks == 1 || b % 2 == 1;
      EXPECT_EQ(std::isnan(f16_to_f32(got[b].d)), nan) << blocks << " blocks, block " << b;
      EXPECT_EQ(std::isnan(f16_to_f32(want[b].d)), nan) << "reference, " << blocks << " blocks, block " << b;
      // A NaN-scaled block's codes take no part in any result (the reference codes a NaN 0, the
      // kernels -128); the others' bytes are the reference's.
      if (!nan) {
        EXPECT_EQ(std::memcmp(&got[b], &want[b], sizeof(BlockQ8Act)), 0) << blocks << " blocks, block " << b;
      }
    }
  }
}

// Attention of the queries (rows head_dim apart) over a paged cache; the caller sets `out`.
AttentionArgs attention_args(const std::vector<float>& q, const std::vector<int32_t>& limits,
                             const std::vector<const void*>& kp, const std::vector<const void*>& vp, int64_t bs,
                             int64_t hd, DType kv, std::vector<float>& scratch) {
  AttentionArgs a;
  a.q = q.data();
  a.q_stride = hd;
  a.q_limit = limits.data();
  a.n_q = static_cast<int64_t>(limits.size());
  a.k_blocks = kp.data();
  a.v_blocks = vp.data();
  a.block_size = bs;
  a.head_dim = hd;
  a.kv_type = kv;
  a.scale = 1.0f / std::sqrt(float(hd));
  a.out_stride = hd;
  a.scratch = scratch.data();
  return a;
}

// Each query of `a` alone, and each run of two or three queries (the kernels' smaller group
// sizes: a decode step's query heads of one kv head), gives the same bits as in the whole
// call (`out`, from all of `a`).
void expect_queries_alone_match(const KernelTable& t, const AttentionArgs& a, const std::vector<float>& out,
                                const std::string& label) {
  const int64_t hd = a.head_dim;
  for (int64_t size = 1; size <= 3; ++size)
    for (int64_t i = 0; i + size <= a.n_q; ++i) {
      std::vector<float> part(size * hd);
      AttentionArgs b = a;
      b.q = a.q + i * a.q_stride;
      b.q_limit = a.q_limit + i;
      b.n_q = size;
      b.out = part.data();
      t.attention(b);
      for (int64_t d = 0; d < size * hd; ++d)
        ASSERT_EQ(part[d], out[i * hd + d]) << "queries " << i << ".." << i + size - 1 << " alone, " << label;
    }
}

// Attention on a small paged cache: keys transposed per block, values row-major.
TEST_P(KernelTest, AttentionMatchesReference) {
  for (DType kv : {DType::kF32, DType::kF16}) {
    // Head sizes of real models (80: phi-2, 96: phi-3) and shapes some kernels leave to the
    // reference (head_dim 72 or 40, block size 16 or 12).
    for (auto [hd, bs] : {std::pair<int64_t, int64_t>{32, 32}, {64, 32}, {80, 32}, {96, 32}, {128, 32}, {72, 16}, {64, 16}, {40, 12}}) {
      const int64_t n_blocks = (160 + bs - 1) / bs, n_q = 7;
      const size_t elem = kv == DType::kF16 ? 2 : 4;
      std::vector<Buffer> kb, vb;
      std::vector<const void*> kp, vp;
      for (int64_t b = 0; b < n_blocks; ++b) {
        auto kf = test::random_floats(bs * hd, 10 + b), vf = test::random_floats(bs * hd, 20 + b);
        kb.emplace_back(bs * hd * elem);
        vb.emplace_back(bs * hd * elem);
        dtype_traits(kv).from_float(kf.data(), kb.back().data(), bs * hd);
        dtype_traits(kv).from_float(vf.data(), vb.back().data(), bs * hd);
        kp.push_back(kb.back().data());
        vp.push_back(vb.back().data());
      }
      const auto q = test::random_floats(n_q * hd, 5);
      const std::vector<int32_t> limits = {0, 1, 15, 16, 33, 100, 159};
      std::vector<float> out(n_q * hd), out_ref(n_q * hd);
      std::vector<float> scratch(attention_scratch_floats(n_q, n_blocks * bs, hd));
      AttentionArgs a = attention_args(q, limits, kp, vp, bs, hd, kv, scratch);
      a.out = out.data();
      table().attention(a);
      a.out = out_ref.data();
      ref::attention(a);
      for (size_t i = 0; i < out.size(); ++i)
        ASSERT_NEAR(out[i], out_ref[i], 2e-5f) << dtype_name(kv) << " hd=" << hd << " bs=" << bs << " index " << i;
      ASSERT_NO_FATAL_FAILURE(
          expect_queries_alone_match(table(), a, out, "hd=" + std::to_string(hd) + " bs=" + std::to_string(bs)));
    }
  }
}

// Attention over a q8_0 cache: keys and values are q8_0 rows, one per position. Every ISA
// against the reference (which differs from the SIMD kernels only in the order of f32 sums),
// the reference against an exact computation over the dequantized operands (q as quantized to
// q8_0), and each query alone against the same query in a group.
TEST_P(KernelTest, AttentionOverQ8CacheMatchesReference) {
  for (auto [hd, bs] : {std::pair<int64_t, int64_t>{32, 32}, {64, 32}, {96, 32}, {128, 32}, {256, 16}, {64, 12}, {32, 16}}) {
    const int64_t n_blocks = (160 + bs - 1) / bs, n_q = 7;
    const size_t block_bytes = row_bytes(DType::kQ8_0, hd) * bs;
    std::vector<Buffer> kb, vb;
    std::vector<const void*> kp, vp;
    std::vector<float> k_deq(n_blocks * bs * hd), v_deq(n_blocks * bs * hd);
    for (int64_t b = 0; b < n_blocks; ++b) {
      // Keys with an outlier dimension, as real keys have: it sets the block scales.
      auto kf = test::random_floats(bs * hd, 30 + b, 2.0f), vf = test::random_floats(bs * hd, 40 + b);
      for (int64_t j = 0; j < bs; ++j) kf[j * hd + 3] *= 4.0f;
      kb.emplace_back(block_bytes);
      vb.emplace_back(block_bytes);
      dtype_traits(DType::kQ8_0).from_float(kf.data(), kb.back().data(), bs * hd);
      dtype_traits(DType::kQ8_0).from_float(vf.data(), vb.back().data(), bs * hd);
      dtype_traits(DType::kQ8_0).to_float(kb.back().data(), k_deq.data() + b * bs * hd, bs * hd);
      dtype_traits(DType::kQ8_0).to_float(vb.back().data(), v_deq.data() + b * bs * hd, bs * hd);
      kp.push_back(kb.back().data());
      vp.push_back(vb.back().data());
    }
    const auto q = test::random_floats(n_q * hd, 6, 1.5f);
    const std::vector<int32_t> limits = {0, 1, 15, 16, 33, 100, 159};
    std::vector<float> out(n_q * hd), out_ref(n_q * hd);
    std::vector<float> scratch(attention_scratch_floats(n_q, n_blocks * bs, hd));
    AttentionArgs a = attention_args(q, limits, kp, vp, bs, hd, DType::kQ8_0, scratch);
    a.out = out.data();
    table().attention(a);
    a.out = out_ref.data();
    ref::attention(a);
    for (size_t i = 0; i < out.size(); ++i)
      ASSERT_NEAR(out[i], out_ref[i], 2e-5f) << "q8_0 hd=" << hd << " bs=" << bs << " index " << i;
    // The reference against double precision over the dequantized operands.
    Buffer q8(row_bytes(DType::kQ8Act, hd));
    std::vector<float> q_deq(hd);
    for (int64_t i = 0; i < n_q; ++i) {
      dtype_traits(DType::kQ8Act).from_float(q.data() + i * hd, q8.data(), hd);
      dtype_traits(DType::kQ8Act).to_float(q8.data(), q_deq.data(), hd);
      const int64_t n_pos = limits[i] + 1;
      std::vector<double> s(n_pos);
      double max = -INFINITY, sum = 0;
      for (int64_t j = 0; j < n_pos; ++j) {
        s[j] = 0;
        for (int64_t d = 0; d < hd; ++d) s[j] += double(q_deq[d]) * k_deq[j * hd + d];
        s[j] *= a.scale;
        max = std::max(max, s[j]);
      }
      for (int64_t j = 0; j < n_pos; ++j) sum += s[j] = std::exp(s[j] - max);
      for (int64_t d = 0; d < hd; ++d) {
        double o = 0;
        for (int64_t j = 0; j < n_pos; ++j) o += s[j] / sum * v_deq[j * hd + d];
        ASSERT_NEAR(out_ref[i * hd + d], o, 2e-5) << "reference, q8_0 hd=" << hd << " query " << i << " dim " << d;
      }
    }
    ASSERT_NO_FATAL_FAILURE(
        expect_queries_alone_match(table(), a, out, "q8_0 hd=" + std::to_string(hd) + " bs=" + std::to_string(bs)));
  }
}

// The dispatch promise: every entry the AVX-512 table fills, the AVX2 table fills too (its own
// kernel, never the reference's), except the bf16 dot probe, which AVX2 has no instruction for.
TEST(KernelTables, Avx2FillsEveryEntryAvx512Fills) {
  const auto isas = available_isas();
  if (std::find(isas.begin(), isas.end(), Isa::kAvx512) == isas.end()) GTEST_SKIP() << "no AVX-512 on this CPU";
  const KernelTable& scalar = for_isa(Isa::kScalar);
  const KernelTable& avx2 = for_isa(Isa::kAvx2);
  const KernelTable& avx512 = for_isa(Isa::kAvx512);
  for (size_t i = 0; i < kDTypeSlots; ++i) {
    const char* name = dtype_registered(static_cast<DType>(i)) ? dtype_name(static_cast<DType>(i)) : "?";
    if (avx512.gemm[i].fn != nullptr) {
      EXPECT_NE(avx2.gemm[i].fn, nullptr) << "gemm of " << name;
    }
    if (avx512.convert[i] != scalar.convert[i]) {
      EXPECT_NE(avx2.convert[i], scalar.convert[i]) << "convert to " << name;
    }
    if (avx512.to_float[i] != scalar.to_float[i]) {
      EXPECT_NE(avx2.to_float[i], scalar.to_float[i]) << "to_float of " << name;
    }
  }
  auto own = [&](auto member, const char* what) {
    if (avx512.*member != scalar.*member) {
      EXPECT_NE(avx2.*member, scalar.*member) << what;
    }
  };
  own(&KernelTable::rms_norm, "rms_norm");
  own(&KernelTable::silu_mul, "silu_mul");
  own(&KernelTable::add, "add");
  own(&KernelTable::rope, "rope");
  own(&KernelTable::attention, "attention");
  own(&KernelTable::softmax, "softmax");
  own(&KernelTable::gemm_nn_f32, "gemm_nn_f32");
  own(&KernelTable::gemm_tn_f32, "gemm_tn_f32");
  own(&KernelTable::silu_mul_backward, "silu_mul_backward");
  own(&KernelTable::read_stream, "read_stream");
  own(&KernelTable::fma_loop, "fma_loop");
  EXPECT_NE(avx2.w8a8_int8_row.fn, scalar.w8a8_int8_row.fn) << "w8a8_int8_row";
  EXPECT_EQ(avx2.bf16_dot_loop, nullptr);
}

INSTANTIATE_TEST_SUITE_P(AllIsas, KernelTest, ::testing::ValuesIn(available_isas()), isa_label);

}  // namespace
}  // namespace frugal::kernels
