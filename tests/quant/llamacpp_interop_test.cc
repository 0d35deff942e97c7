// Interop with llama.cpp's own files: ../shared/models/wiki-7m-gguf holds one small Llama
// converted by llama.cpp (f32) and quantized by llama-quantize (b4748) to Q8_0 and to Q4_0,
// the latter with output.weight in Q6_K, as llama-quantize does by default.
//
// (a) frugal reads llama.cpp's blocks: every dequantized weight is within one quantization
//     step of the f32 original.
// (b) llama.cpp reads frugal's blocks: quantizing the f32 weights with frugal's reference
//     quantizers gives the bytes llama-quantize wrote, block for block.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/half.h"
#include "io/gguf.h"
#include "quant/formats/blocks.h"
#include "support/test_support.h"

namespace frugal {
namespace {

std::string model_path(const std::string& variant) {
  return test::shared_path("models/wiki-7m-gguf/wiki-7m-" + variant + ".gguf");
}

std::vector<float> dequantize(const Tensor& t) {
  std::vector<float> out(static_cast<size_t>(t.numel()));
  dtype_traits(t.dtype).to_float(t.data, out.data(), t.numel());
  return out;
}

// The signed quantization step at element i of a row: the value of one level, so that the
// element decodes to level * step.
float step_at(DType type, const uint8_t* row, int64_t i) {
  switch (type) {
    case DType::kQ8_0:
      return f16_to_f32(reinterpret_cast<const BlockQ8_0*>(row)[i / kQK].d);
    case DType::kQ4_0:
      return f16_to_f32(reinterpret_cast<const BlockQ4_0*>(row)[i / kQK].d);
    case DType::kQ6_K: {
      const BlockQ6_K& b = reinterpret_cast<const BlockQ6_K*>(row)[i / kQK_K];
      const int64_t sub_block = (i % kQK_K) / 16;
      return f16_to_f32(b.d) * b.scales[sub_block];
    }
    default:
      ADD_FAILURE() << "no step defined for " << dtype_name(type);
      return 0;
  }
}

// How far a dequantized element may be from the value it was quantized from, in steps.
// Round-to-nearest gives half a step. Where the levels were computed from the unrounded
// scale d but decode with d16 = f16(d), |d - d16| <= 2^-11 * d16 adds (|level| + 1/2) * 2^-11
// steps (the half from measuring the half step in d rather than d16); the bounds below use
// (max |level| + 1) / 2048. Beyond half a step only a clamped level may go.
//  - Q8_0: levels -127..127 never clamp: 0.5 + 128/2048 steps for every element.
//  - Q4_0: levels -8..7 and the scale maps the block's signed extreme onto -8, so elements
//    near minus the extreme want level 8 and clamp to 7: a full step, 1 + 9/2048.
//  - Q6_K: every element is re-levelled against its stored sub-block step, so there is no
//    scale rounding term; levels -32..31 clamp when the 8-bit sub-block scale rounded down.
//    The format does not bound that error; on llama.cpp's output.weight it stays under one
//    step, the bound the brief for this test sets.
struct ErrorModel {
  DType type;
  double half_step_bound;
  int clamp_low, clamp_high;  // the levels a clamped element decodes to
  double max_steps;
};
constexpr ErrorModel kModels[] = {
    {DType::kQ8_0, 0.5 + 128.0 / 2048, -127, 127, 0.5 + 128.0 / 2048},
    {DType::kQ4_0, 0.5 + 9.0 / 2048, -8, 7, 1.0 + 9.0 / 2048},
    {DType::kQ6_K, 0.5 + 1e-6, -32, 31, 1.0},
};

const ErrorModel& model_for(DType type) {
  for (const ErrorModel& m : kModels)
    if (m.type == type) return m;
  ADD_FAILURE() << "no error model for " << dtype_name(type);
  return kModels[0];
}

struct Comparison {
  double max_steps = 0;  // max |dequantized - value| / |step|
  int64_t elements = 0;
  int64_t past_bound = 0;      // beyond the model's max_steps
  int64_t past_half_step = 0;  // beyond half_step_bound (all must be clamped)
  int64_t unclamped_past_half_step = 0;
};

// Compares `values` with the dequantized `quantized` element by element, in units of the
// quantized tensor's own step. A zero step (an all-zero block) must give an exact match.
void compare_in_steps(const Tensor& quantized, const std::vector<float>& dequantized, const std::vector<float>& values,
                      Comparison& c) {
  const ErrorModel& model = model_for(quantized.dtype);
  const int64_t cols = quantized.cols();
  for (int64_t r = 0; r < quantized.rows(); ++r) {
    const uint8_t* row = quantized.row_ptr(r);
    for (int64_t i = 0; i < cols; ++i) {
      const size_t k = static_cast<size_t>(r * cols + i);
      const double err = std::fabs(static_cast<double>(dequantized[k]) - values[k]);
      const double step = step_at(quantized.dtype, row, i);
      const double steps = step != 0 ? err / std::fabs(step) : (err == 0 ? 0 : INFINITY);
      c.max_steps = std::max(c.max_steps, steps);
      c.past_bound += steps > model.max_steps;
      if (steps > model.half_step_bound) {
        ++c.past_half_step;
        const long level = std::lround(dequantized[k] / step);
        c.unclamped_past_half_step += level != model.clamp_low && level != model.clamp_high;
      }
      ++c.elements;
    }
  }
}

class LlamaCppFiles : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    f32_file = GgufFile::open(model_path("f32"));
    q8_0_file = GgufFile::open(model_path("q8_0"));
    q4_0_file = GgufFile::open(model_path("q4_0"));
  }
  static void TearDownTestSuite() {
    f32_file.reset();
    q8_0_file.reset();
    q4_0_file.reset();
  }

  static std::unique_ptr<GgufFile> f32_file, q8_0_file, q4_0_file;
};
std::unique_ptr<GgufFile> LlamaCppFiles::f32_file, LlamaCppFiles::q8_0_file, LlamaCppFiles::q4_0_file;

std::vector<float> f32_values(const GgufFile& f32_file, const std::string& name) {
  const GgufTensorInfo* info = f32_file.find_tensor(name);
  if (info == nullptr) {
    ADD_FAILURE() << name << " is missing from " << f32_file.path();
    return {};
  }
  const Tensor t = f32_file.tensor_view(*info);
  EXPECT_EQ(t.dtype, DType::kF32) << name;
  return dequantize(t);
}

DType dtype_of(const GgufFile& file, const std::string& name) {
  const GgufTensorInfo* info = file.find_tensor(name);
  if (info == nullptr) {
    ADD_FAILURE() << name << " is missing from " << file.path();
    return DType::kCount;
  }
  return info->dtype;
}

TEST_F(LlamaCppFiles, HoldTheQuantTypesWeExpect) {
  // Guards the premise of the tests below: which tensors llama-quantize put in which type.
  EXPECT_EQ(dtype_of(*q8_0_file, "blk.0.attn_q.weight"), DType::kQ8_0);
  EXPECT_EQ(dtype_of(*q8_0_file, "output.weight"), DType::kQ8_0);
  EXPECT_EQ(dtype_of(*q4_0_file, "blk.0.ffn_down.weight"), DType::kQ4_0);
  EXPECT_EQ(dtype_of(*q4_0_file, "token_embd.weight"), DType::kQ4_0);
  EXPECT_EQ(dtype_of(*q4_0_file, "output.weight"), DType::kQ6_K);
  EXPECT_EQ(dtype_of(*q4_0_file, "output_norm.weight"), DType::kF32);
}

// (a) Every element of every quantized tensor within its format's error model of the f32
// weight (one step at most), and the unquantized tensors (the norms) exactly equal.
void check_dequantized_against_f32(const GgufFile& quantized_file, const GgufFile& f32_file) {
  int tensors = 0;
  for (const ErrorModel& model : kModels) {
    Comparison c;
    for (const GgufTensorInfo& info : quantized_file.tensors()) {
      if (info.dtype != model.type) continue;
      const Tensor q = quantized_file.tensor_view(info);
      const std::vector<float> ref = f32_values(f32_file, info.name);
      const std::vector<float> deq = dequantize(q);
      ASSERT_EQ(deq.size(), ref.size()) << info.name;
      Comparison one;
      compare_in_steps(q, deq, ref, one);
      EXPECT_EQ(one.past_bound, 0) << info.name << ": max error " << one.max_steps << " steps";
      EXPECT_EQ(one.unclamped_past_half_step, 0) << info.name;
      c.max_steps = std::max(c.max_steps, one.max_steps);
      c.elements += one.elements;
      c.past_half_step += one.past_half_step;
      ++tensors;
    }
    if (c.elements > 0) {
      std::printf("  %s: %s, %lld elements, max error %.4f steps (bound %.4f), %lld clamped past half a step\n",
                  quantized_file.path().c_str(), dtype_name(model.type), static_cast<long long>(c.elements),
                  c.max_steps, model.max_steps, static_cast<long long>(c.past_half_step));
    }
  }
  EXPECT_GT(tensors, 40);
  for (const GgufTensorInfo& info : quantized_file.tensors()) {
    if (info.dtype != DType::kF32) continue;
    const std::vector<float> deq = dequantize(quantized_file.tensor_view(info));
    const std::vector<float> ref = f32_values(f32_file, info.name);
    ASSERT_EQ(deq.size(), ref.size()) << info.name;
    EXPECT_EQ(std::memcmp(deq.data(), ref.data(), deq.size() * sizeof(float)), 0) << info.name;
  }
}

TEST_F(LlamaCppFiles, Q8_0DequantizesWithinHalfAStepOfF32) {
  check_dequantized_against_f32(*q8_0_file, *f32_file);
}

TEST_F(LlamaCppFiles, Q4_0AndQ6_KDequantizeWithinOneStepOfF32) {
  check_dequantized_against_f32(*q4_0_file, *f32_file);
}

// (b) frugal's reference quantizer on the f32 weights against llama-quantize's blocks.
struct Requantized {
  int64_t blocks = 0;
  int64_t identical_blocks = 0;
  double max_steps = 0;  // frugal's dequantized values against llama.cpp's, in llama.cpp's steps
};

Requantized requantize_and_compare(const GgufFile& quantized_file, const GgufFile& f32_file, DType type) {
  Requantized result;
  const DTypeTraits& traits = dtype_traits(type);
  for (const GgufTensorInfo& info : quantized_file.tensors()) {
    if (info.dtype != type) continue;
    const Tensor theirs = quantized_file.tensor_view(info);
    const std::vector<float> ref = f32_values(f32_file, info.name);
    if (ref.size() != static_cast<size_t>(theirs.numel())) {
      ADD_FAILURE() << info.name << " has different sizes in the two files";
      continue;
    }
    std::vector<uint8_t> ours(theirs.nbytes());
    traits.from_float(ref.data(), ours.data(), theirs.numel());
    const int64_t n_blocks = theirs.numel() / traits.block_size;
    const auto* their_bytes = static_cast<const uint8_t*>(theirs.data);
    for (int64_t b = 0; b < n_blocks; ++b) {
      const size_t at = static_cast<size_t>(b) * traits.block_bytes;
      result.identical_blocks += std::memcmp(ours.data() + at, their_bytes + at, traits.block_bytes) == 0;
    }
    result.blocks += n_blocks;
    std::vector<float> our_values(ref.size());
    traits.to_float(ours.data(), our_values.data(), theirs.numel());
    Comparison c;
    compare_in_steps(theirs, dequantize(theirs), our_values, c);
    result.max_steps = std::max(result.max_steps, c.max_steps);
  }
  std::printf("  %s from f32: %lld of %lld blocks byte-identical to llama-quantize's, max difference %.4f steps\n",
              traits.name, static_cast<long long>(result.identical_blocks), static_cast<long long>(result.blocks),
              result.max_steps);
  return result;
}

// All three agree on every byte because llama-quantize, given no imatrix, runs exactly the
// reference quantizers (quantize_row_q8_0_ref, quantize_row_q4_0_ref, quantize_row_q6_K_ref)
// that frugal transcribes, and both round the scales to f16 the same way.
TEST_F(LlamaCppFiles, FrugalQ8_0MatchesLlamaQuantizeByteForByte) {
  const Requantized r = requantize_and_compare(*q8_0_file, *f32_file, DType::kQ8_0);
  EXPECT_EQ(r.blocks, 6815744 / kQK);
  EXPECT_LE(r.max_steps, 1.0);
  EXPECT_EQ(r.identical_blocks, r.blocks);
}

TEST_F(LlamaCppFiles, FrugalQ4_0MatchesLlamaQuantizeByteForByte) {
  const Requantized r = requantize_and_compare(*q4_0_file, *f32_file, DType::kQ4_0);
  EXPECT_EQ(r.blocks, 5767168 / kQK);
  EXPECT_LE(r.max_steps, 1.0);
  EXPECT_EQ(r.identical_blocks, r.blocks);
}

TEST_F(LlamaCppFiles, FrugalQ6_KMatchesLlamaQuantizeByteForByte) {
  const Requantized r = requantize_and_compare(*q4_0_file, *f32_file, DType::kQ6_K);
  EXPECT_EQ(r.blocks, 4096 * 256 / kQK_K);
  EXPECT_LE(r.max_steps, 1.0);
  EXPECT_EQ(r.identical_blocks, r.blocks);
}

}  // namespace
}  // namespace frugal
