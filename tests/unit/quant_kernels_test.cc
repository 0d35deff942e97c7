// The integer kernels over quantized weights (every ISA table this CPU supports) against
// dequantize-then-multiply on random data, with odd M and N and k with odd block counts.
//
// Tolerances, per output y = sum_k x_k w_k:
//  * against the activations as the kernel sees them (q8_act: x rounded to int8 per 32 with an
//    f16 scale) the kernel is exact up to f32 accumulation: 1e-5 of sum |x w| (NF4 adds the
//    rounding of its levels to 1/32639 of the block scale: 0.5/32639 * d * sum |x|);
//  * against the f32 activations the difference is what the activation quantization allows:
//    |x - x_seen| <= dx / 2 + 127 |dx - f16(dx)| <= (0.5 + 127 * 2^-11) amax / 127 per block
//    of 32, so |y - y_exact| <= sum_blocks (sum_{k in block} |w_k|) * 0.563 * amax_block / 127
//    plus the kernel's own tolerance above.
// And batch invariance: a row's outputs are bit-identical alone, batched, and under any
// column split (docs/DESIGN.md, "Batch invariance").
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <tuple>
#include <vector>

#include "core/buffer.h"
#include "core/half.h"
#include "kernels/kernels.h"
#include "quant/formats/blocks.h"
#include "quant/formats/frugal_blocks.h"
#include "support/test_support.h"
#include "unit/gemm_test_util.h"

namespace frugal::kernels {
namespace {

const DType kTypes[] = {DType::kQ8_0,    DType::kQ4_0,    DType::kQ4_1,   DType::kQ5_0, DType::kQ5_1, DType::kIQ4_NL, DType::kNF4,
                        DType::kInt4G32, DType::kInt4G64, DType::kInt4G128, DType::kInt8Row, DType::kQ4_K,
                        DType::kQ6_K,    DType::kCB4,     DType::kInt3G64, DType::kInt2G32, DType::kQ5_K, DType::kQ3_K,
                        DType::kQ2_K};

class QuantKernelTest : public ::testing::TestWithParam<Isa> {
 protected:
  const KernelTable& table() const { return for_isa(GetParam()); }
};

std::string isa_label(const ::testing::TestParamInfo<Isa>& info) { return isa_name(info.param); }

// The smallest row length of a type that the shapes below scale up from.
int64_t min_k(DType type) {
  if (type == DType::kInt8Row) return kInt8RowMinCols;
  return dtype_traits(type).block_size;
}

struct Case {
  Buffer w;
  std::vector<float> w_float;  // [n, k] dequantized weights
  std::vector<float> x;        // [m, k] f32 activations
  int64_t m, n, k;
  size_t w_stride;
};

Case quantized_case(DType type, int64_t m, int64_t n, int64_t k, uint32_t seed) {
  const size_t stride = row_bytes(type, k);
  Case c{Buffer(stride * n), std::vector<float>(n * k), test::random_floats(m * k, seed), m, n, k, stride};
  const auto w = test::random_floats(n * k, seed + 1, 0.5f);
  const DTypeTraits& t = dtype_traits(type);
  for (int64_t r = 0; r < n; ++r) {
    t.from_float(w.data() + r * k, c.w.as<uint8_t>() + r * stride, k);
    t.to_float(c.w.as<uint8_t>() + r * stride, c.w_float.data() + r * k, k);
  }
  return c;
}

// Offsets of the f16 fields of a block, which random bytes would make inf or NaN.
std::vector<int> f16_fields(DType type) {
  switch (type) {
    case DType::kQ4_1: return {0, 2};
    case DType::kQ5_1: return {0, 2};
    case DType::kQ4_K: return {0, 2};
    case DType::kQ5_K: return {0, 2};
    case DType::kQ6_K: return {208};
    case DType::kQ3_K: return {108};
    case DType::kQ2_K: return {80, 82};
    default: return {0};
  }
}

// Rows of random bytes (every code, scale and zero point a file may hold, including Q8_0's
// -128 and Q6_K's scale -128), with the f16 fields kept finite and below 2 in magnitude.
Case random_bytes_case(DType type, int64_t m, int64_t n, int64_t k, uint32_t seed) {
  const size_t stride = row_bytes(type, k);
  Case c{Buffer(stride * n), std::vector<float>(n * k), test::random_floats(m * k, seed), m, n, k, stride};
  std::mt19937 rng(seed);
  auto* bytes = c.w.as<uint8_t>();
  for (size_t i = 0; i < stride * n; ++i) bytes[i] = static_cast<uint8_t>(rng());
  for (int64_t r = 0; r < n; ++r) {
    uint8_t* row = bytes + r * stride;
    if (type == DType::kInt8Row) {
      const float s = 0.001f * (r + 1);
      std::memcpy(row, &s, sizeof(s));
    } else {
      const size_t bb = dtype_traits(type).block_bytes;
      for (size_t b = 0; b < stride / bb; ++b)
        for (int off : f16_fields(type)) row[b * bb + off + 1] &= 0xBF;  // exponent < 16: |v| < 2
    }
    dtype_traits(type).to_float(row, c.w_float.data() + r * k, k);
  }
  return c;
}

using test_util::GemmRun;

GemmRun run(const KernelTable& t, DType type, const Case& c, int64_t split) {
  return test_util::run_gemm(t, type, c.x, c.m, c.k, c.w.data(), c.w_stride, c.n, split);
}

// NF4's level rounding in the kernel.
double level_error(DType type, const Case& c, const std::vector<float>& xs, int64_t i, int64_t j) {
  if (type != DType::kNF4) return 0;
  return test_util::nf4_level_error(c.w.as<uint8_t>() + j * c.w_stride, xs.data() + i * c.k, c.k);
}

void check_against_dequantized(const KernelTable& t, DType type, const Case& c, const std::string& what) {
  const GemmRun r = run(t, type, c, 5);
  const bool quantized_act = gemm_for(t, type).act != DType::kF32;
  for (int64_t i = 0; i < c.m; ++i)
    for (int64_t j = 0; j < c.n; ++j) {
      double seen = 0, magnitude = 0, exact = 0, act_bound = 0;
      for (int64_t kk = 0; kk < c.k; ++kk) {
        const double w = c.w_float[j * c.k + kk];
        seen += double(r.x_seen[i * c.k + kk]) * w;
        magnitude += std::abs(double(r.x_seen[i * c.k + kk]) * w);
        exact += double(c.x[i * c.k + kk]) * w;
      }
      if (quantized_act)
        for (int64_t b = 0; b < c.k / 32; ++b) {
          double amax = 0, wsum = 0;
          for (int64_t kk = 32 * b; kk < 32 * b + 32; ++kk) {
            amax = std::max(amax, std::abs(double(c.x[i * c.k + kk])));
            wsum += std::abs(double(c.w_float[j * c.k + kk]));
          }
          act_bound += wsum * (0.5 + 127.0 / 2048) * amax / 127;
        }
      const double kernel_tol = 1e-5 * magnitude + 1e-6 + level_error(type, c, r.x_seen, i, j);
      const double y = r.y[i * c.n + j];
      ASSERT_NEAR(y, seen, kernel_tol) << dtype_name(type) << " " << what << " m=" << c.m << " n=" << c.n << " k=" << c.k
                                       << " at (" << i << "," << j << "): against the activations the kernel sees";
      ASSERT_NEAR(y, exact, act_bound + kernel_tol) << dtype_name(type) << " " << what << " m=" << c.m << " n=" << c.n
                                                    << " k=" << c.k << " at (" << i << "," << j << "): against f32 activations";
    }
}

TEST_P(QuantKernelTest, EveryFormatMatchesDequantizeThenMultiply) {
  for (DType type : kTypes) {
    const int64_t k0 = min_k(type);
    // k: one block (or one 32-element block for the legacy formats), an odd number of 32-element
    // blocks where the format allows, several blocks; odd M and N with N tails of every size.
    for (auto [m, n, mult] : {std::tuple<int64_t, int64_t, int64_t>{1, 13, 1}, {3, 7, 3}, {5, 20, 2}, {9, 11, 5}, {17, 6, 1}, {1, 37, 7}}) {
      const int64_t k = k0 * mult;
      check_against_dequantized(table(), type, quantized_case(type, m, n, k, static_cast<uint32_t>(7 * m + n)), "rtn");
      check_against_dequantized(table(), type, random_bytes_case(type, m, n, k, static_cast<uint32_t>(11 * m + n)), "random bytes");
    }
  }
}

TEST_P(QuantKernelTest, ResultsDoNotDependOnBatchOrSplit) {
  for (DType type : kTypes) {
    const int64_t k = min_k(type) * (min_k(type) == 32 ? 7 : 2);  // legacy formats: an odd block count
    const Case big = quantized_case(type, 11, 37, k, 99);
    const GemmRun all = run(table(), type, big, 37);
    const GemmRun split = run(table(), type, big, 3);
    for (int64_t r = 0; r < big.m; ++r) {
      Case one{big.w.copy(), big.w_float, std::vector<float>(big.x.begin() + r * big.k, big.x.begin() + (r + 1) * big.k), 1, big.n, big.k, big.w_stride};
      const GemmRun alone = run(table(), type, one, 37);
      for (int64_t j = 0; j < big.n; ++j) {
        ASSERT_EQ(all.y[r * big.n + j], alone.y[j]) << dtype_name(type) << ": row " << r << " differs alone and batched";
        ASSERT_EQ(all.y[r * big.n + j], split.y[r * big.n + j]) << dtype_name(type) << ": column split changes the result";
      }
    }
  }
}

// The AVX-512 and AVX2 tables have their own integer kernel for these formats (the rest use the
// dequantize fallback there); a regression that drops one back to the fallback would be a
// silent 3x.
void expect_integer_kernels(Isa isa) {
  bool have = false;
  for (Isa a : available_isas()) have |= a == isa;
  if (!have) GTEST_SKIP() << "no " << isa_name(isa) << " on this CPU";
  const KernelTable& t = for_isa(isa);
  for (DType type : {DType::kQ8_0, DType::kQ4_0, DType::kQ4_1, DType::kQ5_0, DType::kQ5_1, DType::kIQ4_NL, DType::kNF4, DType::kInt4G32, DType::kInt4G64,
                     DType::kInt4G128, DType::kInt8Row, DType::kQ4_K, DType::kQ6_K, DType::kCB4, DType::kInt3G64, DType::kInt2G32,
                     DType::kQ5_K, DType::kQ3_K, DType::kQ2_K}) {
    EXPECT_NE(t.gemm[static_cast<size_t>(type)].fn, nullptr) << dtype_name(type);
    EXPECT_EQ(t.gemm[static_cast<size_t>(type)].act, DType::kQ8Act) << dtype_name(type);
  }
}

TEST(QuantKernelTable, Avx512HasIntegerKernels) { expect_integer_kernels(Isa::kAvx512); }
TEST(QuantKernelTable, Avx2HasIntegerKernels) { expect_integer_kernels(Isa::kAvx2); }

INSTANTIATE_TEST_SUITE_P(AllIsas, QuantKernelTest, ::testing::ValuesIn(available_isas()), isa_label);

}  // namespace
}  // namespace frugal::kernels
