// Every op's backward function (src/ops/grad/) against PyTorch autograd (the float64 dumps of
// make_torch_reference.py) and against central finite differences of a double-precision
// forward written out here; and every op's forward against the same references.
//
// Tolerances: relative max error (the largest elementwise error over the largest reference
// value). Float32 ops against float64 references agree to a few ulps of the accumulated sums:
// 2e-5 for all ops here (sums of up to a few hundred terms); RoPE allows 5e-5 because the
// angle position * frequency is rounded to float (as every engine does) and positions reach
// 300 here. Finite differences in double with h = 1e-6 are accurate to ~1e-9, so they are
// held to the same float32 tolerances.
#include <gtest/gtest.h>

#include <cmath>

#include <fmt/format.h>
#include <vector>

#include "core/dtype.h"
#include "model/model_config.h"
#include "ops/grad/attention_grad.h"
#include "ops/grad/cross_entropy.h"
#include "ops/grad/dropout.h"
#include "ops/grad/linear_grad.h"
#include "ops/grad/matmul.h"
#include "ops/grad/row_ops_grad.h"
#include "ops/linear.h"
#include "ops/transformer_ops.h"
#include "train/train_test_util.h"

namespace frugal {
namespace {

using test::dot;
using test::finite_differences;
using test::OpEnv;
using test::Reference;
using test::to_double;
using test::to_float;

constexpr double kTol = 2e-5;

const Reference& ops() {
  static const Reference r("ops.safetensors");
  return r;
}

Tensor view(std::vector<float>& v, std::initializer_list<int64_t> shape) { return Tensor(v.data(), DType::kF32, shape); }

// ---- embedding --------------------------------------------------------------------------------

TEST(OpGrad, Embedding) {
  auto table = ops().f32("embedding.table");
  const auto tokens = ops().i32("embedding.tokens");
  const auto d_out = ops().f32("embedding.d_out");
  const int64_t V = 11, d = 6, n = static_cast<int64_t>(tokens.size());
  OpEnv env;
  std::vector<float> out(n * d);
  embedding_lookup(env.ctx, view(table, {V, d}), tokens.data(), n, out.data());
  EXPECT_CLOSE(out, ops().f32("embedding.out"), 0.0);
  std::vector<float> d_table(V * d, 0.0f);
  embedding_backward(env.ctx, tokens.data(), n, d_out.data(), d, V, d_table.data());
  EXPECT_CLOSE(d_table, ops().f32("embedding.d_table"), 1e-6);
  const auto fd = finite_differences(
      [&](const std::vector<double>& t) {
        std::vector<double> y(n * d);
        for (int64_t r = 0; r < n; ++r)
          for (int64_t c = 0; c < d; ++c) y[r * d + c] = t[tokens[r] * d + c];
        return dot(to_double(d_out), y);
      },
      to_double(table));
  EXPECT_CLOSE(d_table, fd, 1e-6);
}

// ---- RMSNorm ----------------------------------------------------------------------------------

std::vector<double> rms_norm_double(const std::vector<double>& x, const std::vector<double>& w, int64_t rows, int64_t n,
                                    double eps) {
  std::vector<double> y(x.size());
  for (int64_t r = 0; r < rows; ++r) {
    double ss = 0;
    for (int64_t i = 0; i < n; ++i) ss += x[r * n + i] * x[r * n + i];
    const double s = 1.0 / std::sqrt(ss / n + eps);
    for (int64_t i = 0; i < n; ++i) y[r * n + i] = x[r * n + i] * s * w[i];
  }
  return y;
}

TEST(OpGrad, RmsNorm) {
  auto x = ops().f32("rms_norm.x");
  auto w = ops().f32("rms_norm.weight");
  const auto dy = ops().f32("rms_norm.d_out");
  const int64_t rows = 5, n = 16;
  const float eps = 1e-5f;
  OpEnv env;
  std::vector<float> y(rows * n), dx(rows * n, 0.0f), dw(n, 0.0f);
  rms_norm_rows(env.ctx, x.data(), view(w, {n}), eps, rows, n, y.data());
  EXPECT_CLOSE(y, ops().f32("rms_norm.out"), kTol);
  rms_norm_backward(env.ctx, x.data(), view(w, {n}), eps, rows, n, dy.data(), dx.data(), false, dw.data());
  EXPECT_CLOSE(dx, ops().f32("rms_norm.d_x"), kTol);
  EXPECT_CLOSE(dw, ops().f32("rms_norm.d_weight"), kTol);
  const auto fd_x = finite_differences(
      [&](const std::vector<double>& v) { return dot(to_double(dy), rms_norm_double(v, to_double(w), rows, n, eps)); },
      to_double(x));
  EXPECT_CLOSE(dx, fd_x, kTol);
  const auto fd_w = finite_differences(
      [&](const std::vector<double>& v) { return dot(to_double(dy), rms_norm_double(to_double(x), v, rows, n, eps)); },
      to_double(w));
  EXPECT_CLOSE(dw, fd_w, kTol);
  // accumulate adds to what is there
  std::vector<float> acc(rows * n, 1.0f);
  rms_norm_backward(env.ctx, x.data(), view(w, {n}), eps, rows, n, dy.data(), acc.data(), true);
  for (size_t i = 0; i < acc.size(); ++i) ASSERT_FLOAT_EQ(acc[i], 1.0f + dx[i]);
}

// ---- RoPE -------------------------------------------------------------------------------------

void check_rope(const std::string& op, bool interleaved) {
  auto x = ops().f32(op + ".x");
  const auto positions = ops().i32(op + ".positions");
  const auto dy = ops().f32(op + ".d_out");
  const int64_t rows = 4, heads = 3, D = 8;
  OpEnv env;
  RopeConfig rc;
  rc.n_rot = D;
  const auto inv_freq = rc.inv_freq();
  const RopeTables t = make_rope_tables(env.ctx, inv_freq.data(), D, 1.0f, positions.data(), rows);
  auto y = x;
  rope_rows(env.ctx, y.data(), rows, heads, D, D, t, interleaved);
  EXPECT_CLOSE(y, ops().f32(op + ".out"), 5e-5);
  auto dx = dy;
  rope_backward(env.ctx, dx.data(), rows, heads, D, D, t, interleaved);
  EXPECT_CLOSE(dx, ops().f32(op + ".d_x"), 5e-5);
  // Finite differences of a double rotation by frugal's own (float) angles.
  auto forward = [&](const std::vector<double>& v) {
    std::vector<double> out(v.size());
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t h = 0; h < heads; ++h)
        for (int64_t i = 0; i < D / 2; ++i) {
          const int64_t a = interleaved ? 2 * i : i, b = interleaved ? 2 * i + 1 : i + D / 2;
          const double c = t.cos[r * t.half + i], s = t.sin[r * t.half + i];
          const double x0 = v[(r * heads + h) * D + a], x1 = v[(r * heads + h) * D + b];
          out[(r * heads + h) * D + a] = x0 * c - x1 * s;
          out[(r * heads + h) * D + b] = x0 * s + x1 * c;
        }
    return dot(to_double(dy), out);
  };
  EXPECT_CLOSE(dx, finite_differences(forward, to_double(x)), kTol);
}

TEST(OpGrad, RopeHalves) { check_rope("rope_halves", false); }
TEST(OpGrad, RopePairs) { check_rope("rope_pairs", true); }

// ---- attention --------------------------------------------------------------------------------

// out[b, t, h] over keys key_begin..t of kv head h / group, in double.
std::vector<double> attention_double(const AttentionShape& s, const std::vector<double>& q, const std::vector<double>& k,
                                     const std::vector<double>& v, const std::vector<int32_t>& key_begin) {
  const int64_t T = s.seq_len, D = s.head_dim, group = s.n_head / s.n_head_kv;
  std::vector<double> out(s.rows() * s.q_dim(), 0.0);
  for (int64_t b = 0; b < s.n_seq; ++b)
    for (int64_t t = 0; t < T; ++t)
      for (int64_t h = 0; h < s.n_head; ++h) {
        const int64_t g = h / group, row = b * T + t, lo = key_begin.empty() ? 0 : key_begin[row];
        std::vector<double> p(t + 1, 0.0);
        double max = -1e300;
        for (int64_t j = lo; j <= t; ++j) {
          double dotp = 0;
          for (int64_t d = 0; d < D; ++d) dotp += q[row * s.q_dim() + h * D + d] * k[(b * T + j) * s.kv_dim() + g * D + d];
          p[j] = dotp / std::sqrt(double(D));
          max = std::max(max, p[j]);
        }
        double sum = 0;
        for (int64_t j = lo; j <= t; ++j) sum += (p[j] = std::exp(p[j] - max));
        for (int64_t j = lo; j <= t; ++j)
          for (int64_t d = 0; d < D; ++d)
            out[row * s.q_dim() + h * D + d] += p[j] / sum * v[(b * T + j) * s.kv_dim() + g * D + d];
      }
  return out;
}

TEST(OpGrad, AttentionGqaCausalPacked) {
  const AttentionShape s{2, 9, 4, 2, 8};
  auto q = ops().f32("attention.q");
  auto k = ops().f32("attention.k");
  auto v = ops().f32("attention.v");
  const auto key_begin = ops().i32("attention.key_begin");
  const auto d_out = ops().f32("attention.d_out");
  for (int threads : {1, 2}) {
    OpEnv env(threads);
    std::vector<float> out(s.rows() * s.q_dim());
    attention_forward(env.ctx, s, q.data(), k.data(), v.data(), key_begin.data(), out.data());
    EXPECT_CLOSE(out, ops().f32("attention.out"), kTol);
    std::vector<float> dq(q.size()), dk(k.size(), 7.0f), dv(v.size(), 7.0f);  // dk, dv are overwritten
    attention_backward(env.ctx, s, q.data(), k.data(), v.data(), key_begin.data(), out.data(), d_out.data(), dq.data(),
                       dk.data(), dv.data());
    EXPECT_CLOSE(dq, ops().f32("attention.d_q"), kTol);
    EXPECT_CLOSE(dk, ops().f32("attention.d_k"), kTol);
    EXPECT_CLOSE(dv, ops().f32("attention.d_v"), kTol);
    if (threads == 2) {
      auto qd = to_double(q), kd = to_double(k), vd = to_double(v);
      const auto dod = to_double(d_out);
      EXPECT_CLOSE(dq, finite_differences([&](const std::vector<double>& x) { return dot(dod, attention_double(s, x, kd, vd, key_begin)); }, qd), kTol);
      EXPECT_CLOSE(dk, finite_differences([&](const std::vector<double>& x) { return dot(dod, attention_double(s, qd, x, vd, key_begin)); }, kd), kTol);
      EXPECT_CLOSE(dv, finite_differences([&](const std::vector<double>& x) { return dot(dod, attention_double(s, qd, kd, x, key_begin)); }, vd), kTol);
    }
  }
}

TEST(OpGrad, AttentionLongSequencesAcrossRowBlocks) {
  // 150 positions: several 64-row blocks with causal key ranges, without packing; 6 heads over
  // 2 kv heads. Checked against the double forward and finite differences in a few directions.
  const AttentionShape s{1, 150, 6, 2, 16};
  auto q = test::random_floats(s.rows() * s.q_dim(), 1, 0.5f);
  auto k = test::random_floats(s.rows() * s.kv_dim(), 2, 0.5f);
  auto v = test::random_floats(s.rows() * s.kv_dim(), 3);
  const auto d_out = test::random_floats(s.rows() * s.q_dim(), 4);
  OpEnv env;
  std::vector<float> out(s.rows() * s.q_dim()), dq(q.size()), dk(k.size()), dv(v.size());
  attention_forward(env.ctx, s, q.data(), k.data(), v.data(), nullptr, out.data());
  const auto qd = to_double(q), kd = to_double(k), vd = to_double(v), dod = to_double(d_out);
  EXPECT_CLOSE(out, attention_double(s, qd, kd, vd, {}), kTol);
  attention_backward(env.ctx, s, q.data(), k.data(), v.data(), nullptr, out.data(), d_out.data(), dq.data(), dk.data(),
                     dv.data());
  // Directional derivatives: d/de f(x + e u) = grad · u, for random directions u.
  for (int which = 0; which < 3; ++which) {
    const auto& base = which == 0 ? qd : which == 1 ? kd : vd;
    const auto& grad = which == 0 ? dq : which == 1 ? dk : dv;
    const auto u = test::random_floats(base.size(), 10 + which);
    auto f = [&](double e) {
      auto x = base;
      for (size_t i = 0; i < x.size(); ++i) x[i] += e * u[i];
      return dot(dod, attention_double(s, which == 0 ? x : qd, which == 1 ? x : kd, which == 2 ? x : vd, {}));
    };
    const double h = 1e-5, fd = (f(h) - f(-h)) / (2 * h);
    double analytic = 0, magnitude = 0;
    for (size_t i = 0; i < u.size(); ++i) {
      analytic += double(grad[i]) * u[i];
      magnitude += std::abs(double(grad[i]) * u[i]);
    }
    EXPECT_NEAR(analytic, fd, 1e-5 * magnitude) << "input " << which;
  }
}

// ---- SwiGLU -----------------------------------------------------------------------------------

TEST(OpGrad, SwiGlu) {
  auto gate = ops().f32("swiglu.gate");
  auto up = ops().f32("swiglu.up");
  const auto dy = ops().f32("swiglu.d_out");
  const int64_t rows = 4, n = 10;
  OpEnv env;
  std::vector<float> y(rows * n), dg(rows * n), du(rows * n);
  silu_mul_rows(env.ctx, gate.data(), up.data(), rows, n, y.data());
  EXPECT_CLOSE(y, ops().f32("swiglu.out"), kTol);
  silu_mul_backward_rows(env.ctx, gate.data(), up.data(), dy.data(), rows, n, dg.data(), du.data());
  EXPECT_CLOSE(dg, ops().f32("swiglu.d_gate"), kTol);
  EXPECT_CLOSE(du, ops().f32("swiglu.d_up"), kTol);
  auto f = [&](const std::vector<double>& g, const std::vector<double>& u) {
    std::vector<double> out(g.size());
    for (size_t i = 0; i < g.size(); ++i) out[i] = g[i] / (1 + std::exp(-g[i])) * u[i];
    return dot(to_double(dy), out);
  };
  EXPECT_CLOSE(dg, finite_differences([&](const std::vector<double>& g) { return f(g, to_double(up)); }, to_double(gate)), kTol);
  EXPECT_CLOSE(du, finite_differences([&](const std::vector<double>& u) { return f(to_double(gate), u); }, to_double(up)), kTol);
}

// ---- linear, LoRA -----------------------------------------------------------------------------

std::vector<double> linear_double(const std::vector<double>& x, const std::vector<double>& w, int64_t rows, int64_t n_out,
                                  int64_t n_in) {
  std::vector<double> y(rows * n_out, 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t o = 0; o < n_out; ++o)
      for (int64_t i = 0; i < n_in; ++i) y[r * n_out + o] += x[r * n_in + i] * w[o * n_in + i];
  return y;
}

// `w` [n_out, n_in] stored as `type` (q), and those rows read back as f32 (deq).
void quantize_rows(DType type, const std::vector<float>& w, int64_t n_out, int64_t n_in, std::vector<uint8_t>& q,
                   std::vector<float>& deq) {
  const DTypeTraits& t = dtype_traits(type);
  const size_t rb = row_bytes(type, n_in);
  q.assign(rb * n_out, 0);
  deq.assign(n_out * n_in, 0.0f);
  for (int64_t r = 0; r < n_out; ++r) {
    t.from_float(w.data() + r * n_in, q.data() + r * rb, n_in);
    t.to_float(q.data() + r * rb, deq.data() + r * n_in, n_in);
  }
}

TEST(OpGrad, Linear) {
  auto x = ops().f32("linear.x");
  auto w = ops().f32("linear.weight");
  const auto dy = ops().f32("linear.d_out");
  const int64_t rows = 5, n_out = 7, n_in = 12;
  OpEnv env;
  Linear lin;
  lin.weight = view(w, {n_out, n_in});
  std::vector<float> y(rows * n_out), dx(rows * n_in), dw(n_out * n_in, 0.0f);
  linear(env.ctx, lin, x.data(), rows, y.data());
  EXPECT_CLOSE(y, ops().f32("linear.out"), kTol);
  linear_backward_input(env.ctx, lin, dy.data(), rows, dx.data(), false);
  linear_backward_weight(env.ctx, dy.data(), x.data(), rows, n_out, n_in, dw.data());
  EXPECT_CLOSE(dx, ops().f32("linear.d_x"), kTol);
  EXPECT_CLOSE(dw, ops().f32("linear.d_weight"), kTol);
  EXPECT_CLOSE(dx, finite_differences([&](const std::vector<double>& v) { return dot(to_double(dy), linear_double(v, to_double(w), rows, n_out, n_in)); }, to_double(x)), kTol);
  EXPECT_CLOSE(dw, finite_differences([&](const std::vector<double>& v) { return dot(to_double(dy), linear_double(to_double(x), v, rows, n_out, n_in)); }, to_double(w)), kTol);
}

// Frozen weights of every type a base model can have: only the input gradient flows, through
// the weights as stored (dequantized), which is what the forward multiplies by.
TEST(OpGrad, LinearInputGradientThroughFrozenQuantizedWeights) {
  const int64_t rows = 37, n_out = 45, n_in = 128;
  const auto x = test::random_floats(rows * n_in, 21);
  const auto dy = test::random_floats(rows * n_out, 22);
  const auto w = test::random_floats(n_out * n_in, 23, 0.3f);
  for (DType type : {DType::kF16, DType::kBF16, DType::kQ8_0, DType::kQ4_0, DType::kQ4_1, DType::kQ6_K, DType::kNF4}) {
    if (!dtype_registered(type) || dtype_traits(type).from_float == nullptr) continue;
    if (n_in % dtype_traits(type).block_size != 0) continue;
    std::vector<uint8_t> q;
    std::vector<float> deq;
    quantize_rows(type, w, n_out, n_in, q, deq);
    OpEnv env;
    Linear lin;
    lin.weight = Tensor(q.data(), type, {n_out, n_in});
    std::vector<float> dx(rows * n_in, 1.0f);
    linear_backward_input(env.ctx, lin, dy.data(), rows, dx.data(), /*accumulate=*/true);
    std::vector<double> expected(rows * n_in, 1.0);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t o = 0; o < n_out; ++o)
        for (int64_t i = 0; i < n_in; ++i) expected[r * n_in + i] += double(dy[r * n_out + o]) * deq[o * n_in + i];
    SCOPED_TRACE(dtype_name(type));
    EXPECT_CLOSE(dx, expected, kTol);
    // The forward training runs over frozen weights is the product with the dequantized
    // weights, and dx is its derivative: finite differences over the first rows (each row's
    // product is independent of the others).
    std::vector<float> y(rows * n_out);
    linear_forward_frozen(env.ctx, lin, x.data(), rows, y.data());
    EXPECT_CLOSE(y, linear_double(to_double(x), to_double(deq), rows, n_out, n_in), kTol);
    const int64_t fd_rows = 2;
    const std::vector<double> dy_head(dy.begin(), dy.begin() + fd_rows * n_out);
    const auto fd = finite_differences(
        [&](const std::vector<double>& v) { return dot(dy_head, linear_double(v, to_double(deq), fd_rows, n_out, n_in)); },
        std::vector<double>(x.begin(), x.begin() + fd_rows * n_in));
    std::vector<double> fd_expected(fd.size());
    for (size_t i = 0; i < fd.size(); ++i) fd_expected[i] = fd[i] + 1.0;
    EXPECT_CLOSE(std::vector<float>(dx.begin(), dx.begin() + fd_rows * n_in), fd_expected, kTol);
  }
}

// The frozen forward in both of its forms: dot products for short inputs, transposed weights
// in axpy form for tall ones (training's batches), over f32 and dequantized weights.
TEST(OpGrad, FrozenLinearForwardShortAndTall) {
  const int64_t n_out = 70, n_in = 64;
  const auto w = test::random_floats(n_out * n_in, 31, 0.3f);
  for (DType type : {DType::kF32, DType::kQ4_0, DType::kNF4}) {
    std::vector<uint8_t> q;
    std::vector<float> deq;
    quantize_rows(type, w, n_out, n_in, q, deq);
    Linear lin;
    lin.weight = Tensor(q.data(), type, {n_out, n_in});
    for (int64_t rows : {5, 67, 300}) {
      SCOPED_TRACE(fmt::format("{} rows of {}", rows, dtype_name(type)));
      const auto x = test::random_floats(rows * n_in, 32);
      for (int threads : {1, 2}) {
        OpEnv env(threads);
        std::vector<float> y(rows * n_out);
        linear_forward_frozen(env.ctx, lin, x.data(), rows, y.data());
        EXPECT_CLOSE(y, linear_double(to_double(x), to_double(deq), rows, n_out, n_in), kTol);
      }
    }
  }
}

TEST(OpGrad, LoraLinear) {
  auto x = ops().f32("lora.x");
  auto w = ops().f32("lora.weight");
  auto a = ops().f32("lora.a");
  auto b = ops().f32("lora.b");
  const float scale = ops().f32("lora.scale")[0];
  const auto dy = ops().f32("lora.d_out");
  const int64_t rows = 5, n_out = 7, n_in = 12, rank = 3;
  OpEnv env;
  LoraAdapter ad;
  ad.a = view(a, {rank, n_in});
  ad.b = view(b, {n_out, rank});
  ad.scale = scale;
  Linear lin;
  lin.weight = view(w, {n_out, n_in});
  lin.lora.push_back(ad);
  // The forward as inference runs it: the LoRA step inside linear().
  std::vector<float> y(rows * n_out);
  linear(env.ctx, lin, x.data(), rows, y.data());
  EXPECT_CLOSE(y, ops().f32("lora.out"), kTol);
  // The forward as training runs it: base, then lora_add keeping h.
  Linear base = lin;
  base.lora.clear();
  std::vector<float> y2(rows * n_out), h(rows * rank);
  linear(env.ctx, base, x.data(), rows, y2.data());
  lora_add(env.ctx, ad, x.data(), rows, y2.data(), h.data());
  EXPECT_EQ(y, y2);
  std::vector<float> dx(rows * n_in), da(rank * n_in, 0.0f), db(n_out * rank, 0.0f);
  linear_backward_input(env.ctx, base, dy.data(), rows, dx.data(), false);
  lora_backward(env.ctx, ad, x.data(), h.data(), dy.data(), rows, da.data(), db.data(), dx.data(), true);
  EXPECT_CLOSE(dx, ops().f32("lora.d_x"), kTol);
  EXPECT_CLOSE(da, ops().f32("lora.d_a"), kTol);
  EXPECT_CLOSE(db, ops().f32("lora.d_b"), kTol);
  auto f = [&](const std::vector<double>& xv, const std::vector<double>& av, const std::vector<double>& bv) {
    auto y = linear_double(xv, to_double(w), rows, n_out, n_in);
    const auto hv = linear_double(xv, av, rows, rank, n_in);
    const auto l = linear_double(hv, bv, rows, n_out, rank);
    for (size_t i = 0; i < y.size(); ++i) y[i] += scale * l[i];
    return dot(to_double(dy), y);
  };
  EXPECT_CLOSE(dx, finite_differences([&](const std::vector<double>& v) { return f(v, to_double(a), to_double(b)); }, to_double(x)), kTol);
  EXPECT_CLOSE(da, finite_differences([&](const std::vector<double>& v) { return f(to_double(x), v, to_double(b)); }, to_double(a)), kTol);
  EXPECT_CLOSE(db, finite_differences([&](const std::vector<double>& v) { return f(to_double(x), to_double(a), v); }, to_double(b)), kTol);
}

// ---- cross-entropy ----------------------------------------------------------------------------

TEST(OpGrad, CrossEntropyWithLossMask) {
  auto logits = ops().f32("cross_entropy.logits");
  const auto targets = ops().i32("cross_entropy.targets");
  const int64_t rows = 6, V = 13;
  int64_t counted = 0;
  for (int32_t t : targets) counted += t >= 0;
  std::vector<float> weights(rows, 1.0f / counted);
  OpEnv env;
  std::vector<float> loss(rows);
  cross_entropy_forward(env.ctx, logits.data(), targets.data(), rows, V, loss.data());
  EXPECT_CLOSE(loss, ops().f32("cross_entropy.losses"), kTol);
  double mean = 0;
  for (float l : loss) mean += l / counted;
  EXPECT_NEAR(mean, ops().f32("cross_entropy.loss")[0], 1e-6);
  auto grad = logits;
  cross_entropy_backward(env.ctx, grad.data(), targets.data(), weights.data(), rows, V);
  EXPECT_CLOSE(grad, ops().f32("cross_entropy.d_logits"), kTol);
  // The fused version is what training runs: identical results.
  auto fused = logits;
  std::vector<float> fused_loss(rows);
  cross_entropy_forward_backward(env.ctx, fused.data(), targets.data(), weights.data(), rows, V, fused_loss.data());
  EXPECT_EQ(fused, grad);
  EXPECT_EQ(fused_loss, loss);
  const auto fd = finite_differences(
      [&](const std::vector<double>& z) {
        double total = 0;
        for (int64_t r = 0; r < rows; ++r) {
          if (targets[r] < 0) continue;
          double m = -1e300, s = 0;
          for (int64_t i = 0; i < V; ++i) m = std::max(m, z[r * V + i]);
          for (int64_t i = 0; i < V; ++i) s += std::exp(z[r * V + i] - m);
          total += (m + std::log(s) - z[r * V + targets[r]]) / counted;
        }
        return total;
      },
      to_double(logits));
  EXPECT_CLOSE(grad, fd, kTol);
}

// ---- dropout ----------------------------------------------------------------------------------

TEST(OpGrad, DropoutMaskIsAFunctionOfSeedAndPosition) {
  const int64_t rows = 300, n = 333;
  const float p = 0.25f;
  const auto x = test::random_floats(rows * n, 5);
  const auto dy = test::random_floats(rows * n, 6);
  OpEnv env;
  std::vector<float> y(rows * n), y2(rows * n), dx(rows * n);
  dropout_forward(env.ctx, 77, p, x.data(), rows, n, y.data());
  dropout_forward(env.ctx, 77, p, x.data(), rows, n, y2.data());
  EXPECT_EQ(y, y2);
  dropout_backward(env.ctx, 77, p, dy.data(), rows, n, dx.data(), false);
  int64_t dropped = 0;
  for (int64_t i = 0; i < rows * n; ++i) {
    const float f = dropout_factor(77, p, i / n, i % n);
    ASSERT_TRUE(f == 0.0f || f == 1.0f / (1.0f - p));
    dropped += f == 0.0f;
    ASSERT_EQ(y[i], x[i] * f);
    ASSERT_EQ(dx[i], dy[i] * f);  // the derivative of a fixed-mask dropout is its mask
  }
  // About p of 99,900 elements dropped (binomial: sd ~137).
  EXPECT_NEAR(double(dropped) / (rows * n), p, 0.01);
  dropout_forward(env.ctx, 78, p, x.data(), rows, n, y2.data());
  EXPECT_NE(y, y2);
}

// ---- determinism ------------------------------------------------------------------------------

TEST(OpGrad, ProductsDoNotDependOnTheThreadCount) {
  const int64_t m = 301, n = 77, k = 130;
  const auto a = test::random_floats(m * k, 31);
  const auto b = test::random_floats(k * n, 32);
  const auto c = test::random_floats(m * n, 33);
  std::vector<std::vector<float>> nn, tn, nt;
  for (int threads : {1, 2, 3}) {
    OpEnv env(threads);
    std::vector<float> y1(m * n), y2(k * n), y3(m * k);
    matmul_nn(env.ctx, a.data(), k, b.data(), n, y1.data(), n, m, n, k);
    matmul_tn(env.ctx, a.data(), k, c.data(), n, y2.data(), n, k, n, m);  // [k, n] = aᵀ c
    matmul_nt(env.ctx, c.data(), n, b.data(), n, y3.data(), k, m, k, n);  // [m, k] = c bᵀ
    nn.push_back(y1);
    tn.push_back(y2);
    nt.push_back(y3);
  }
  for (int i = 1; i < 3; ++i) {
    EXPECT_EQ(nn[0], nn[i]);
    EXPECT_EQ(tn[0], tn[i]);
    EXPECT_EQ(nt[0], nt[i]);
  }
}

}  // namespace
}  // namespace frugal
