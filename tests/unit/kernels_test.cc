// Every kernel of every ISA table this CPU supports, against the scalar reference (the spec)
// or an exact double-precision computation, on random data with awkward sizes (tails).
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/buffer.h"
#include "core/half.h"
#include "kernels/kernels.h"
#include "kernels/ref/ref_kernels.h"
#include "support/test_support.h"

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

// Runs a table's GEMM the way ops/linear.cc does: activations converted, columns split.
std::vector<float> run_gemm(const KernelTable& t, DType type, const GemmCase& c, int64_t split) {
  const GemmKernel kernel = gemm_for(t, type);
  Buffer xa;
  GemmArgs a;
  if (kernel.act == DType::kF32) {
    a.x = c.x.data();
    a.x_stride = c.k * sizeof(float);
  } else {
    const size_t stride = row_bytes(kernel.act, c.k);
    xa = Buffer(stride * c.m);
    for (int64_t r = 0; r < c.m; ++r) t.convert[static_cast<size_t>(kernel.act)](c.x.data() + r * c.k, xa.as<uint8_t>() + r * stride, c.k);
    a.x = xa.data();
    a.x_stride = stride;
  }
  std::vector<float> y(c.m * c.n, NAN);
  a.w = c.w.data();
  a.w_stride = row_bytes(type, c.k);
  a.y = y.data();
  a.y_stride = c.n;
  a.m = c.m;
  a.k = c.k;
  for (int64_t n0 = 0; n0 < c.n; n0 += split) kernel.fn(a, n0, std::min(c.n, n0 + split));
  return y;
}

// The activations as the kernel's activation type represents them.
std::vector<float> activations_seen(const KernelTable& t, DType type, const GemmCase& c) {
  const GemmKernel kernel = gemm_for(t, type);
  if (kernel.act == DType::kF32) return c.x;
  std::vector<float> out(c.x.size());
  Buffer tmp(row_bytes(kernel.act, c.k));
  for (int64_t r = 0; r < c.m; ++r) {
    t.convert[static_cast<size_t>(kernel.act)](c.x.data() + r * c.k, tmp.data(), c.k);
    dtype_traits(kernel.act).to_float(tmp.data(), out.data() + r * c.k, c.k);
  }
  return out;
}

TEST_P(KernelTest, GemmMatchesExactProductForEveryWeightType) {
  for (DType type : {DType::kF32, DType::kF16, DType::kBF16, DType::kQ8_0, DType::kQ4_0, DType::kQ4_1}) {
    const int64_t block = dtype_traits(type).block_size;
    for (auto [m, n, k] : {std::tuple<int64_t, int64_t, int64_t>{1, 13, 64}, {3, 7, 96}, {5, 20, 160}, {9, 11, 288}, {17, 6, 32}}) {
      if (k % block) continue;
      if (block == 1) k += 3;  // float types: a k that is no multiple of any vector width
      const GemmCase c = make_case(type, m, n, k, 7 * m + n);
      const auto y = run_gemm(table(), type, c, 5);
      const auto xs = activations_seen(table(), type, c);
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
    const GemmCase big = make_case(type, 11, 37, 256, 99);
    const auto all = run_gemm(table(), type, big, 37);
    const auto split = run_gemm(table(), type, big, 3);
    for (int64_t r = 0; r < big.m; ++r) {
      GemmCase one{big.w.copy(), big.w_float, std::vector<float>(big.x.begin() + r * big.k, big.x.begin() + (r + 1) * big.k), 1, big.n, big.k};
      const auto alone = run_gemm(table(), type, one, 37);
      for (int64_t j = 0; j < big.n; ++j) {
        ASSERT_EQ(all[r * big.n + j], alone[j]) << dtype_name(type) << ": row " << r << " differs alone and batched";
        ASSERT_EQ(all[r * big.n + j], split[r * big.n + j]) << dtype_name(type) << ": column split changes the result";
      }
    }
  }
}

TEST_P(KernelTest, RowKernelsMatchReference) {
  for (int64_t n : {1, 15, 16, 17, 100, 576}) {
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
  for (DType type : {DType::kF16, DType::kBF16, DType::kQ8_0}) {
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

// Attention on a small paged cache: keys transposed per block, values row-major.
TEST_P(KernelTest, AttentionMatchesReference) {
  for (DType kv : {DType::kF32, DType::kF16}) {
    for (int64_t hd : {32, 64, 128}) {
      const int64_t bs = 32, n_blocks = 5, n_q = 7;
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
      AttentionArgs a;
      a.q = q.data();
      a.q_stride = hd;
      a.q_limit = limits.data();
      a.n_q = n_q;
      a.k_blocks = kp.data();
      a.v_blocks = vp.data();
      a.block_size = bs;
      a.head_dim = hd;
      a.kv_type = kv;
      a.scale = 1.0f / std::sqrt(float(hd));
      a.out_stride = hd;
      a.scratch = scratch.data();
      a.out = out.data();
      table().attention(a);
      a.out = out_ref.data();
      ref::attention(a);
      for (size_t i = 0; i < out.size(); ++i)
        ASSERT_NEAR(out[i], out_ref[i], 2e-5f) << dtype_name(kv) << " hd=" << hd << " index " << i;
      // Each query alone gives the same bits as in the group.
      for (int64_t i = 0; i < n_q; ++i) {
        std::vector<float> one(hd);
        AttentionArgs b = a;
        b.q = q.data() + i * hd;
        b.q_limit = limits.data() + i;
        b.n_q = 1;
        b.out = one.data();
        table().attention(b);
        for (int64_t d = 0; d < hd; ++d) ASSERT_EQ(one[d], out[i * hd + d]) << "query " << i << " alone";
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllIsas, KernelTest, ::testing::ValuesIn(available_isas()), isa_label);

}  // namespace
}  // namespace frugal::kernels
