// The quantization formats' rows in the dtype table, and their layouts and quantizers pinned
// against outputs of two independent implementations:
//  - dequantization against gguf-py's numpy dequantizers (llama.cpp's gguf-py/gguf/quants.py,
//    a vectorised reimplementation that shares no code with ggml-quants.c);
//  - quantization against ggml-quants.c's reference quantizers themselves (the functions
//    llama-quantize runs when it has no imatrix), built without FMA contraction.
// The expected values were produced once by running those implementations on the same
// inputs that the tests generate; the inputs are built from integers with exact arithmetic
// only, so they are the same on every platform.
#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/dtype.h"
#include "quant/formats/blocks.h"

namespace frugal {
namespace {

struct FormatRow {
  DType type;
  const char* name;
  int gguf_type;
  int block_size;
  size_t block_bytes;
  double bits_per_weight;
};

// GGML's type ids, block sizes and bytes per block (ggml.c's type_traits).
constexpr FormatRow kFormats[] = {
    {DType::kQ4_0, "q4_0", 2, 32, 18, 4.5},       {DType::kQ4_1, "q4_1", 3, 32, 20, 5.0},
    {DType::kQ5_0, "q5_0", 6, 32, 22, 5.5},       {DType::kQ5_1, "q5_1", 7, 32, 24, 6.0},
    {DType::kQ8_0, "q8_0", 8, 32, 34, 8.5},       {DType::kQ2_K, "q2_k", 10, 256, 84, 2.625},
    {DType::kQ3_K, "q3_k", 11, 256, 110, 3.4375}, {DType::kQ4_K, "q4_k", 12, 256, 144, 4.5},
    {DType::kQ5_K, "q5_k", 13, 256, 176, 5.5},    {DType::kQ6_K, "q6_k", 14, 256, 210, 6.5625},
    {DType::kQ8_K, "q8_k", 15, 256, 292, 9.125},  {DType::kIQ4_NL, "iq4_nl", 20, 32, 18, 4.5},
};

TEST(QuantFormats, RegisteredWithGgmlIdsNamesAndSizes) {
  for (const FormatRow& f : kFormats) {
    SCOPED_TRACE(f.name);
    ASSERT_TRUE(dtype_registered(f.type));
    const DTypeTraits& t = dtype_traits(f.type);
    EXPECT_STREQ(t.name, f.name);
    EXPECT_EQ(t.gguf_type, f.gguf_type);
    EXPECT_EQ(t.block_size, f.block_size);
    EXPECT_EQ(t.block_bytes, f.block_bytes);
    EXPECT_FALSE(t.is_float);
    EXPECT_NE(t.to_float, nullptr);
    EXPECT_NE(t.from_float, nullptr);
    EXPECT_EQ(dtype_from_gguf(f.gguf_type), f.type);
    EXPECT_EQ(dtype_from_name(f.name), f.type);
    EXPECT_EQ(row_bytes(f.type, f.block_size), f.block_bytes);
    EXPECT_EQ(row_bytes(f.type, 4096), 4096 / f.block_size * f.block_bytes);
    EXPECT_DOUBLE_EQ(bits_per_weight(f.type), f.bits_per_weight);
  }
  // Upper-case and GGML's own spellings are not frugal's names.
  EXPECT_FALSE(dtype_from_name("Q8_0").has_value());
  EXPECT_FALSE(dtype_from_name("q4_K").has_value());
  // GGML ids frugal does not implement (Q8_1 = 9, IQ2_XXS = 16) stay unknown.
  EXPECT_FALSE(dtype_from_gguf(9).has_value());
  EXPECT_FALSE(dtype_from_gguf(16).has_value());
}

TEST(QuantFormats, BlockStructsMatchTheTable) {
  EXPECT_EQ(sizeof(BlockQ8_0), dtype_traits(DType::kQ8_0).block_bytes);
  EXPECT_EQ(sizeof(BlockQ4_0), dtype_traits(DType::kQ4_0).block_bytes);
  EXPECT_EQ(sizeof(BlockQ4_1), dtype_traits(DType::kQ4_1).block_bytes);
  EXPECT_EQ(sizeof(BlockQ5_0), dtype_traits(DType::kQ5_0).block_bytes);
  EXPECT_EQ(sizeof(BlockQ5_1), dtype_traits(DType::kQ5_1).block_bytes);
  EXPECT_EQ(sizeof(BlockQ2_K), dtype_traits(DType::kQ2_K).block_bytes);
  EXPECT_EQ(sizeof(BlockQ3_K), dtype_traits(DType::kQ3_K).block_bytes);
  EXPECT_EQ(sizeof(BlockQ4_K), dtype_traits(DType::kQ4_K).block_bytes);
  EXPECT_EQ(sizeof(BlockQ5_K), dtype_traits(DType::kQ5_K).block_bytes);
  EXPECT_EQ(sizeof(BlockQ6_K), dtype_traits(DType::kQ6_K).block_bytes);
  EXPECT_EQ(sizeof(BlockQ8_K), dtype_traits(DType::kQ8_K).block_bytes);
  EXPECT_EQ(sizeof(BlockIQ4_NL), dtype_traits(DType::kIQ4_NL).block_bytes);
  // Field offsets that readers of raw bytes (and the golden blocks below) rely on.
  EXPECT_EQ(offsetof(BlockQ5_0, qs), 6u);
  EXPECT_EQ(offsetof(BlockQ5_1, qh), 4u);
  EXPECT_EQ(offsetof(BlockQ2_K, d), 80u);
  EXPECT_EQ(offsetof(BlockQ3_K, d), 108u);
  EXPECT_EQ(offsetof(BlockQ4_K, qs), 16u);
  EXPECT_EQ(offsetof(BlockQ5_K, qs), 48u);
  EXPECT_EQ(offsetof(BlockQ6_K, d), 208u);
  EXPECT_EQ(offsetof(BlockQ8_K, bsums), 260u);
}

uint32_t xorshift32(uint32_t& s) {
  s ^= s << 13;
  s ^= s >> 17;
  s ^= s << 5;
  return s;
}

// One block of random bytes with sane scales: every field that holds an f16 scale gets a
// positive value in [1/128, 1/64), every f16 min a value of either sign in [1/64, 1/32),
// Q8_K's f32 scale a value in [0.01, 0.02). Everything else (quants, packed sub-block
// scales, bit masks) is random, so every bit of every field is exercised.
std::vector<uint8_t> random_block(DType type) {
  const DTypeTraits& t = dtype_traits(type);
  std::vector<size_t> scale_offsets, min_offsets;
  switch (type) {
    case DType::kQ4_1:
    case DType::kQ5_1:
      scale_offsets = {0};
      min_offsets = {2};
      break;
    case DType::kQ2_K:
      scale_offsets = {80, 82};
      break;
    case DType::kQ3_K:
      scale_offsets = {108};
      break;
    case DType::kQ4_K:
    case DType::kQ5_K:
      scale_offsets = {0, 2};
      break;
    case DType::kQ6_K:
      scale_offsets = {208};
      break;
    case DType::kQ8_K:
      break;
    default:  // Q8_0, Q4_0, Q5_0, IQ4_NL: d first
      scale_offsets = {0};
  }
  uint32_t s = 1234u + static_cast<uint32_t>(t.gguf_type);
  std::vector<uint8_t> bytes(t.block_bytes);
  for (auto& b : bytes) b = static_cast<uint8_t>(xorshift32(s) & 0xFF);
  for (size_t at : scale_offsets) {
    const uint16_t v = 0x2000 | (xorshift32(s) & 0x3FF);
    std::memcpy(&bytes[at], &v, 2);
  }
  for (size_t at : min_offsets) {
    const uint32_t r = xorshift32(s);
    const uint16_t v = static_cast<uint16_t>((r & 0x8000) | 0x2400 | (r & 0x3FF));
    std::memcpy(&bytes[at], &v, 2);
  }
  if (type == DType::kQ8_K) {
    const float d = 0.01f * (1.0f + static_cast<float>(xorshift32(s) & 0xFF) / 256.0f);
    std::memcpy(&bytes[0], &d, 4);
  }
  return bytes;
}

// gguf-py's dequantization of random_block(type): sum of y[i] * (i % 13 + 1) (position
// sensitive, so a permuted layout fails), sum of |y[i]|, and four elements exactly.
struct DequantGolden {
  DType type;
  double weighted_sum;
  double abs_sum;
  float samples[4];  // y[0], y[17], y[block_size / 2 + 5], y[block_size - 1]
};
constexpr DequantGolden kDequantGolden[] = {
    {DType::kQ8_0, -3.983642578125, 21.23931884765625, {0.274383545f, -0.640228271f, 0.812988281f, -1.16867065f}},
    {DType::kQ4_0,
     -0.8030548095703125,
     1.8182373046875,
     {-0.0606079102f, 0.0454559326f, -0.0454559326f, 0.0151519775f}},
    {DType::kQ4_1, 21.677864074707031, 3.4324569702148438, {0.183235168f, 0.072227478f, 0.116630554f, 0.0389251709f}},
    {DType::kQ5_0, 3.048614501953125, 2.6729049682617188, {0.0214691162f, 0.139549255f, 0.0966110229f, 0.139549255f}},
    {DType::kQ5_1, 33.35443115234375, 5.3830718994140625, {0.193084717f, 0.0156478882f, 0.234031677f, 0.0838928223f}},
    {DType::kQ2_K,
     34.563423156738281,
     29.110160827636719,
     {-0.113075256f, -0.150238037f, -0.0751190186f, -0.0270233154f}},
    {DType::kQ3_K, -61.586151123046875, 55.670433044433594, {-0.626831055f, 0.0156707764f, 0.0f, 0.0f}},
    {DType::kQ4_K, 4880.2972259521484, 714.29751586914062, {3.82044983f, 4.44374084f, 5.58161926f, 1.42152405f}},
    {DType::kQ5_K, 9969.8197937011719, 1380.7899322509766, {3.5570755f, 2.1734848f, 0.0825500488f, 14.5903473f}},
    {DType::kQ6_K, 772.47713470458984, 3005.5187301635742, {-14.9427795f, 2.21374512f, 1.95547485f, -13.7252197f}},
    {DType::kQ8_K, -180.31147886067629, 218.06506727170199, {-0.480937481f, -0.788203061f, 1.36265624f, -0.814921856f}},
    {DType::kIQ4_NL,
     -29.775962829589844,
     15.739410400390625,
     {0.240516663f, 0.663825989f, 0.125068665f, -0.471412659f}},
};

TEST(QuantFormats, DequantizeMatchesGgufPyOnRandomBlocks) {
  for (const DequantGolden& g : kDequantGolden) {
    SCOPED_TRACE(dtype_name(g.type));
    const int bs = dtype_traits(g.type).block_size;
    const std::vector<uint8_t> block = random_block(g.type);
    std::vector<float> y(static_cast<size_t>(bs));
    dtype_traits(g.type).to_float(block.data(), y.data(), bs);
    double weighted = 0, abs_sum = 0;
    for (int i = 0; i < bs; ++i) {
      weighted += static_cast<double>(y[i]) * (i % 13 + 1);
      abs_sum += std::fabs(static_cast<double>(y[i]));
    }
    // numpy sums pairwise and frugal in order: the sums agree to rounding, not to the bit.
    EXPECT_NEAR(weighted, g.weighted_sum, 1e-12 * 13 * abs_sum);
    EXPECT_NEAR(abs_sum, g.abs_sum, 1e-12 * abs_sum);
    const int at[4] = {0, 17, bs / 2 + 5, bs - 1};
    for (int k = 0; k < 4; ++k) EXPECT_EQ(y[at[k]], g.samples[k]) << "element " << at[k];
  }
}

// Super-blocks of bell-shaped data with per-super-block scales from 0.01 to 0.07, and
// the cases that take special paths: all-zero super-blocks, sub-blocks of zeros, and
// super-blocks shifted off zero (which exercise the formats' mins). Irwin-Hall: the sum of
// four uniform 16-bit integers, centred and scaled to unit variance, computed exactly.
std::vector<float> golden_input(int64_t n) {
  uint32_t s = 0x9E3779B9u;
  std::vector<float> x(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const int64_t block = i / 256;
    double u = 0;
    for (int k = 0; k < 4; ++k) u += xorshift32(s) >> 16;
    double v = (u - 4 * 32767.5) / 37837.2 * 0.01 * static_cast<double>(1 + block % 7);
    if (block % 16 == 9) v += 0.03;
    if (block % 16 == 5) v = 0;
    if (block % 16 == 12 && i % 32 < 8) v = 0;
    x[static_cast<size_t>(i)] = static_cast<float>(v);
  }
  return x;
}

uint64_t fnv1a(const std::vector<uint8_t>& bytes) {
  uint64_t h = 14695981039346656037ull;
  for (uint8_t b : bytes) h = (h ^ b) * 1099511628211ull;
  return h;
}

// FNV-1a of ggml's reference quantization of golden_input(262144). Q8_K's differs from
// ggml's in one respect: ggml leaves an all-zero block's bsums as they were, frugal zeroes
// them (the expected hash was computed with zeroed bsums).
struct QuantGolden {
  DType type;
  uint64_t hash;
};
constexpr QuantGolden kQuantGolden[] = {
    {DType::kQ8_0, 0x3145e9a617f6a54cull}, {DType::kQ4_0, 0x993b768a7a3f5be0ull},
    {DType::kQ4_1, 0xcf5fcd85ace404caull}, {DType::kQ5_0, 0x6b806b90b7fa28c1ull},
    {DType::kQ5_1, 0xa3affe17e76d45b5ull}, {DType::kQ2_K, 0xcbf9323a86dcc211ull},
    {DType::kQ3_K, 0x9887ae472577af79ull}, {DType::kQ4_K, 0xe37763945d7b2e51ull},
    {DType::kQ5_K, 0xe31d0a660c41069dull}, {DType::kQ6_K, 0xde180df086387bfcull},
    {DType::kQ8_K, 0xa693b5674179c40eull}, {DType::kIQ4_NL, 0x293523d22e582568ull},
};

TEST(QuantFormats, QuantizeGivesGgmlReferenceBytes) {
  // A mismatch means the bytes are no longer the ones llama-quantize writes. Besides a change
  // to a quantizer, compiling these files with FMA contraction (-mfma or -march=native
  // without -ffp-contract=off) does this: it changes Q2_K, Q4_K and Q5_K here.
  const int64_t n = 256 * 1024;
  const std::vector<float> x = golden_input(n);
  for (const QuantGolden& g : kQuantGolden) {
    std::vector<uint8_t> out(row_bytes(g.type, n));
    dtype_traits(g.type).from_float(x.data(), out.data(), n);
    EXPECT_EQ(fnv1a(out), g.hash) << dtype_name(g.type) << " quantizes golden_input to different bytes";
  }
}

}  // namespace
}  // namespace frugal
