// The packed products (kernels over weights interleaved for the SIMD width,
// kernels/interleave.h) of every ISA table that has them, against dequantize-then-multiply
// with the same tolerances as quant_kernels_test.cc (1e-5 of sum |x w| against the
// activations as the kernel sees them, plus NF4's level rounding), and their batch and split invariance. The layout
// itself: interleaving and back gives the rows' bytes.
#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <cstring>
#include <random>
#include <tuple>
#include <vector>

#include "core/buffer.h"
#include "core/half.h"
#include "kernels/interleave.h"
#include "kernels/kernels.h"
#include "quant/formats/blocks.h"
#include "quant/formats/frugal_blocks.h"
#include "support/test_support.h"
#include "unit/gemm_test_util.h"

namespace frugal::kernels {
namespace {

const DType kTypes[] = {DType::kQ4_0,    DType::kQ4_1,    DType::kQ5_0,    DType::kQ5_1,     DType::kIQ4_NL,
                        DType::kNF4,     DType::kQ8_0,    DType::kInt4G32, DType::kInt4G64,  DType::kInt4G128,
                        DType::kQ2_K,    DType::kQ3_K,    DType::kQ4_K,    DType::kQ5_K,     DType::kQ6_K};

struct Case {
  Buffer w;         // plain rows
  Buffer packed;    // the same, interleaved
  std::vector<float> w_float;
  std::vector<float> x;
  int64_t m, n, k;
  size_t w_stride;
};

// Where a block keeps its f16 scale and, in formats with one, its f16 minimum (-1: none); the
// other formats start with their scale.
struct HalfFields {
  size_t scale;
  int64_t min;
};
HalfFields half_fields(DType type) {
  switch (type) {
    case DType::kQ4_1: return {offsetof(BlockQ4_1, d), offsetof(BlockQ4_1, m)};
    case DType::kQ5_1: return {offsetof(BlockQ5_1, d), offsetof(BlockQ5_1, m)};
    case DType::kQ2_K: return {offsetof(BlockQ2_K, d), offsetof(BlockQ2_K, dmin)};
    case DType::kQ3_K: return {offsetof(BlockQ3_K, d), -1};
    case DType::kQ4_K: return {offsetof(BlockQ4_K, d), offsetof(BlockQ4_K, dmin)};
    case DType::kQ5_K: return {offsetof(BlockQ5_K, d), offsetof(BlockQ5_K, dmin)};
    case DType::kQ6_K: return {offsetof(BlockQ6_K, d), -1};
    default: return {0, -1};
  }
}

// Rows quantized from random values, or random bytes (every code and zero point) with finite
// f16 scales and minimums below 2 in magnitude.
Case make_case(DType type, int lanes, int64_t m, int64_t n, int64_t k, uint32_t seed, bool random_bytes) {
  const size_t stride = row_bytes(type, k);
  Case c{Buffer(stride * n), Buffer(stride * n), std::vector<float>(n * k), test::random_floats(m * k, seed), m, n, k, stride};
  const DTypeTraits& t = dtype_traits(type);
  if (random_bytes) {
    std::mt19937 rng(seed);
    for (size_t i = 0; i < stride * n; ++i) c.w.as<uint8_t>()[i] = static_cast<uint8_t>(rng());
    // Bit 6 of an f16's high byte (little-endian: the field's second) cleared: below 2 in magnitude.
    const HalfFields f = half_fields(type);
    for (size_t b = 0; b < stride * n / t.block_bytes; ++b) {
      uint8_t* block = c.w.as<uint8_t>() + b * t.block_bytes;
      block[f.scale + 1] &= 0xBF;
      if (f.min >= 0) block[f.min + 1] &= 0xBF;
    }
  } else {
    const auto w = test::random_floats(n * k, seed + 1, 0.5f);
    for (int64_t r = 0; r < n; ++r) t.from_float(w.data() + r * k, c.w.as<uint8_t>() + r * stride, k);
  }
  for (int64_t r = 0; r < n; ++r) t.to_float(c.w.as<uint8_t>() + r * stride, c.w_float.data() + r * k, k);
  interleave_rows(type, lanes, c.w.data(), c.packed.data(), n, k);
  return c;
}

// NF4's level rounding in the kernel.
double level_error(DType type, const Case& c, const std::vector<float>& xs, int64_t i, int64_t j) {
  if (type != DType::kNF4) return 0;
  return test_util::nf4_level_error(c.w.as<uint8_t>() + j * c.w_stride, xs.data() + i * c.k, c.k);
}

std::vector<Isa> isas_with_packed() {
  std::vector<Isa> out;
  for (Isa isa : available_isas())
    for (DType type : kTypes)
      if (for_isa(isa).packed[static_cast<size_t>(type)].lanes != 0) {
        out.push_back(isa);
        break;
      }
  return out;
}

test_util::GemmRun run(const KernelTable& t, DType type, const Case& c, int64_t split) {
  return test_util::run_kernel(t, t.packed[static_cast<size_t>(type)].kernel, c.x, c.m, c.k, c.packed.data(), c.w_stride,
                               c.n, split);
}

TEST(Interleave, RowsComeBackUnchanged) {
  for (DType type : kTypes)
    for (int lanes : {8, 16}) {
      const Case c = make_case(type, lanes, 1, 3 * lanes, 768, 5, true);
      std::vector<uint8_t> row(c.w_stride);
      for (int64_t r = 0; r < c.n; ++r) {
        deinterleave_row(type, lanes, c.packed.data(), r, c.k, row.data());
        ASSERT_EQ(std::memcmp(row.data(), c.w.as<uint8_t>() + r * c.w_stride, c.w_stride), 0) << dtype_name(type) << " row " << r;
      }
    }
}

TEST(Interleave, TheFormatsWithALayout) {
  for (DType type : kTypes) EXPECT_TRUE(interleavable(type)) << dtype_name(type);
  for (DType type : {DType::kBF16, DType::kQ8_K, DType::kInt3G64}) EXPECT_FALSE(interleavable(type)) << dtype_name(type);
}

class PackedKernelTest : public ::testing::TestWithParam<Isa> {};

TEST_P(PackedKernelTest, MatchesDequantizeThenMultiply) {
  const KernelTable& t = for_isa(GetParam());
  for (DType type : kTypes) {
    const int lanes = t.packed[static_cast<size_t>(type)].lanes;
    if (lanes == 0) continue;
    // M across the register tiles (8, 4, 1 and their remainders), several groups, k from one
    // block to SmolLM2's 576.
    for (auto [m, groups, blocks] : {std::tuple<int64_t, int64_t, int64_t>{1, 1, 1}, {3, 3, 3}, {13, 2, 18}, {17, 1, 2}, {1, 4, 7}}) {
      for (bool random_bytes : {false, true}) {
        const int64_t group = dtype_traits(type).block_size;
        const Case c = make_case(type, lanes, m, groups * lanes, group * blocks, static_cast<uint32_t>(7 * m + groups), random_bytes);
        const test_util::GemmRun r = run(t, type, c, lanes);
        for (int64_t i = 0; i < c.m; ++i)
          for (int64_t j = 0; j < c.n; ++j) {
            double seen = 0, magnitude = 0;
            for (int64_t kk = 0; kk < c.k; ++kk) {
              const double p = double(r.x_seen[i * c.k + kk]) * c.w_float[j * c.k + kk];
              seen += p;
              magnitude += std::abs(p);
            }
            ASSERT_NEAR(r.y[i * c.n + j], seen, 1e-5 * magnitude + 1e-6 + level_error(type, c, r.x_seen, i, j))
                << isa_name(GetParam()) << " " << dtype_name(type) << (random_bytes ? " random bytes" : " rtn") << " m=" << m
                << " n=" << c.n << " k=" << c.k << " at (" << i << "," << j << ")";
          }
      }
    }
  }
}

TEST_P(PackedKernelTest, ResultsDoNotDependOnBatchOrSplit) {
  const KernelTable& t = for_isa(GetParam());
  for (DType type : kTypes) {
    const int lanes = t.packed[static_cast<size_t>(type)].lanes;
    if (lanes == 0) continue;
    const Case big = make_case(type, lanes, 11, 4 * lanes, 7 * dtype_traits(type).block_size, 99, false);
    const auto all = run(t, type, big, big.n);
    const auto split = run(t, type, big, lanes);
    for (int64_t r = 0; r < big.m; ++r) {
      Case one{big.w.copy(), big.packed.copy(), big.w_float, std::vector<float>(big.x.begin() + r * big.k, big.x.begin() + (r + 1) * big.k),
               1, big.n, big.k, big.w_stride};
      const auto alone = run(t, type, one, one.n);
      for (int64_t j = 0; j < big.n; ++j) {
        ASSERT_EQ(all.y[r * big.n + j], alone.y[j]) << dtype_name(type) << ": row " << r << " differs alone and batched";
        ASSERT_EQ(all.y[r * big.n + j], split.y[r * big.n + j]) << dtype_name(type) << ": column split changes the result";
      }
    }
  }
}

bool have_isa(Isa isa) {
  for (Isa a : available_isas())
    if (a == isa) return true;
  return false;
}

// AVX-512 has these packed products: losing one would be a silent 2x.
TEST(PackedKernelTable, Avx512HasThem) {
  if (!have_isa(Isa::kAvx512)) GTEST_SKIP() << "no AVX-512 on this CPU";
  for (DType type : kTypes) {
    EXPECT_EQ(for_isa(Isa::kAvx512).packed[static_cast<size_t>(type)].lanes, 16) << dtype_name(type);
    EXPECT_EQ(for_isa(Isa::kAvx512).packed[static_cast<size_t>(type)].kernel.act, DType::kQ8Act) << dtype_name(type);
  }
}

TEST(PackedKernelTable, Avx2HasThem) {
  if (!have_isa(Isa::kAvx2)) GTEST_SKIP() << "no AVX2 on this CPU";
  for (DType type : kTypes) {
    EXPECT_EQ(for_isa(Isa::kAvx2).packed[static_cast<size_t>(type)].lanes, 8) << dtype_name(type);
    EXPECT_EQ(for_isa(Isa::kAvx2).packed[static_cast<size_t>(type)].kernel.act, DType::kQ8Act) << dtype_name(type);
  }
}

// Both ISAs' packed products compute each output by the same chain (gemm_packed_avx2.cc), so a
// model gives the same bits on a CPU with AVX-512 and on one without: the same activations
// (converted once) against the same rows interleaved for 16 and for 8 lanes.
TEST(PackedKernelTable, Avx2AndAvx512GiveTheSameBits) {
  if (!have_isa(Isa::kAvx2) || !have_isa(Isa::kAvx512)) GTEST_SKIP() << "needs both AVX2 and AVX-512";
  const KernelTable& wide = for_isa(Isa::kAvx512);
  const KernelTable& narrow = for_isa(Isa::kAvx2);
  for (DType type : kTypes)
    for (bool random_bytes : {false, true}) {
      const Case c = make_case(type, 16, 6, 32, 3 * dtype_traits(type).block_size, 41, random_bytes);
      Buffer packed8(c.w_stride * c.n);
      interleave_rows(type, 8, c.w.data(), packed8.data(), c.n, c.k);
      const auto a = run(wide, type, c, 16);
      const auto b = test_util::run_kernel(wide, narrow.packed[static_cast<size_t>(type)].kernel, c.x, c.m, c.k, packed8.data(),
                                           c.w_stride, c.n, 8);
      for (size_t i = 0; i < a.y.size(); ++i)
        ASSERT_EQ(a.y[i], b.y[i]) << dtype_name(type) << (random_bytes ? " random bytes" : " rtn") << " output " << i;
    }
}

std::string isa_label(const ::testing::TestParamInfo<Isa>& info) { return isa_name(info.param); }
INSTANTIATE_TEST_SUITE_P(WithPacked, PackedKernelTest, ::testing::ValuesIn(isas_with_packed()), isa_label);
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(PackedKernelTest);

}  // namespace
}  // namespace frugal::kernels
