// Micro-benchmarks of the kernels on the shapes that dominate real models (SmolLM2-135M and
// Qwen2.5-0.5B widths): the decode GEMV (one row, bandwidth-bound) and the prefill GEMM
// (512 rows, compute-bound), per weight type, single-threaded, plus attention.
//   build/bench/frugal_microbench --benchmark_filter=bf16
// Counters: GB/s of weights read (GEMV), GFLOP/s (GEMM), for comparison with `frugal bench`'s
// machine limits.
#include <benchmark/benchmark.h>

#include <limits>
#include <random>
#include <vector>

#include "gemm_operands.h"
#include "core/buffer.h"
#include "kernels/kernels.h"
#include "runtime/kv_cache.h"

namespace frugal::kernels {
namespace {

using bench::GemmOperands;
using bench::make_gemm_operands;

void BM_Gemv(benchmark::State& state, DType type) {
  const int64_t n = state.range(0), k = state.range(1);
  GemmOperands o = make_gemm_operands(type, 1, n, k);
  for (auto _ : state) o.kernel.fn(o.args, 0, n);
  state.counters["GB/s"] = benchmark::Counter(static_cast<double>(o.w.size()), benchmark::Counter::kIsIterationInvariantRate);
}

// The same over weights interleaved for the ISA's packed kernel (kernels/interleave.h).
void BM_GemvPacked(benchmark::State& state, DType type) {
  const int64_t n = state.range(0), k = state.range(1);
  GemmOperands o = make_gemm_operands(type, 1, n, k, std::numeric_limits<int64_t>::max(), false, true);
  for (auto _ : state) o.kernel.fn(o.args, 0, n);
  state.counters["GB/s"] = benchmark::Counter(static_cast<double>(o.w.size()), benchmark::Counter::kIsIterationInvariantRate);
}

// `m` rows of activations against an n x k weight matrix (state.range(0), range(1)).
void gemm_rows(benchmark::State& state, DType type, int64_t m, bool packed) {
  const int64_t n = state.range(0), k = state.range(1);
  GemmOperands o = make_gemm_operands(type, m, n, k, std::numeric_limits<int64_t>::max(), false, packed);
  for (auto _ : state) o.kernel.fn(o.args, 0, n);
  constexpr auto kRate = benchmark::Counter::kIsIterationInvariantRate;
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * m * n * k / 1e9, kRate);
  state.counters["GB/s"] = benchmark::Counter(static_cast<double>(o.w.size()), kRate);
}

// A prefill's product: 512 rows.
void BM_Gemm(benchmark::State& state, DType type, bool packed = false) { gemm_rows(state, type, 512, packed); }

// A continuous-batching decode step's product: 16 rows (a server's 16 streams) against the
// whole weight matrix. Each weight read serves 16 rows, so the product sits between the
// bandwidth-bound GEMV and the compute-bound prefill GEMM; the output head's shape (49152 x
// 576) streams its weights from memory, the others stay in the caches between iterations.
void BM_GemmStep16(benchmark::State& state, DType type, bool packed = false) { gemm_rows(state, type, 16, packed); }

// The activations' conversion to q8_act that an integer product runs first (serially, on the
// caller, for up to 16 rows): `rows` rows of `k` floats from N(0, 1).
void BM_ConvertQ8Act(benchmark::State& state) {
  const int64_t rows = state.range(0), k = state.range(1);
  std::mt19937 rng(7);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> x(rows * k);
  for (float& v : x) v = dist(rng);
  const size_t stride = row_bytes(DType::kQ8Act, k);
  std::vector<uint8_t> q(stride * rows);
  const ConvertFn convert = active().convert[static_cast<size_t>(DType::kQ8Act)];
  for (auto _ : state)
    for (int64_t r = 0; r < rows; ++r) convert(x.data() + r * k, q.data() + r * stride, k);
  state.counters["ns/block"] = benchmark::Counter(static_cast<double>(rows * k / 32),
                                                  benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_ConvertQ8Act)->Args({16, 576})->Args({16, 1536})->Args({16, 896})->Unit(benchmark::kMicrosecond);

// Shapes: (n_out, n_in) of SmolLM2-135M's q, gate/up, down and output head; Qwen2.5-0.5B's gate/up.
void shapes(benchmark::internal::Benchmark* b) {
  for (auto [n, k] : {std::pair<int64_t, int64_t>{576, 576}, {1536, 576}, {576, 1536}, {49152, 576}, {4864, 896}})
    b->Args({n, k});
}
// The K-quants' rows are whole 256-element super-blocks: Llama-3.2-1B's q, gate/up and down.
void kquant_shapes(benchmark::internal::Benchmark* b) {
  for (auto [n, k] : {std::pair<int64_t, int64_t>{2048, 2048}, {8192, 2048}, {2048, 8192}}) b->Args({n, k});
}
void prefill_shapes(benchmark::internal::Benchmark* b) {
  for (auto [n, k] : {std::pair<int64_t, int64_t>{576, 576}, {1536, 576}, {576, 1536}}) b->Args({n, k});
}

BENCHMARK_CAPTURE(BM_Gemv, f32, DType::kF32)->Apply(shapes);
BENCHMARK_CAPTURE(BM_Gemv, bf16, DType::kBF16)->Apply(shapes);
BENCHMARK_CAPTURE(BM_Gemv, f16, DType::kF16)->Apply(shapes);
BENCHMARK_CAPTURE(BM_Gemv, q8_0, DType::kQ8_0)->Apply(shapes);
BENCHMARK_CAPTURE(BM_Gemv, q4_0, DType::kQ4_0)->Apply(shapes);
BENCHMARK_CAPTURE(BM_Gemv, q4_1, DType::kQ4_1)->Apply(shapes);
BENCHMARK_CAPTURE(BM_Gemv, int3_g64, DType::kInt3G64)->Apply(shapes);
BENCHMARK_CAPTURE(BM_Gemv, int2_g32, DType::kInt2G32)->Apply(shapes);
BENCHMARK_CAPTURE(BM_GemvPacked, q8_0, DType::kQ8_0)->Apply(shapes);
BENCHMARK_CAPTURE(BM_GemvPacked, q4_0, DType::kQ4_0)->Apply(shapes);
BENCHMARK_CAPTURE(BM_Gemv, iq4_nl, DType::kIQ4_NL)->Apply(shapes);
BENCHMARK_CAPTURE(BM_GemvPacked, iq4_nl, DType::kIQ4_NL)->Apply(shapes);
BENCHMARK_CAPTURE(BM_GemvPacked, q4_1, DType::kQ4_1)->Apply(shapes);
BENCHMARK_CAPTURE(BM_Gemv, q5_0, DType::kQ5_0)->Apply(shapes);
BENCHMARK_CAPTURE(BM_GemvPacked, q5_0, DType::kQ5_0)->Apply(shapes);
BENCHMARK_CAPTURE(BM_GemvPacked, q5_1, DType::kQ5_1)->Apply(shapes);
BENCHMARK_CAPTURE(BM_GemvPacked, int4_g64, DType::kInt4G64)->Apply(shapes);
BENCHMARK_CAPTURE(BM_Gemv, nf4, DType::kNF4)->Apply(shapes);
BENCHMARK_CAPTURE(BM_GemvPacked, nf4, DType::kNF4)->Apply(shapes);
BENCHMARK_CAPTURE(BM_GemvPacked, q4_k, DType::kQ4_K)->Apply(kquant_shapes);
BENCHMARK_CAPTURE(BM_GemvPacked, q2_k, DType::kQ2_K)->Apply(kquant_shapes);
BENCHMARK_CAPTURE(BM_GemvPacked, q3_k, DType::kQ3_K)->Apply(kquant_shapes);
BENCHMARK_CAPTURE(BM_GemvPacked, q5_k, DType::kQ5_K)->Apply(kquant_shapes);
BENCHMARK_CAPTURE(BM_GemvPacked, q6_k, DType::kQ6_K)->Apply(kquant_shapes);
BENCHMARK_CAPTURE(BM_Gemv, q4_k, DType::kQ4_K)->Apply(kquant_shapes);
BENCHMARK_CAPTURE(BM_Gemv, q5_k, DType::kQ5_K)->Apply(kquant_shapes);
BENCHMARK_CAPTURE(BM_Gemv, q6_k, DType::kQ6_K)->Apply(kquant_shapes);
BENCHMARK_CAPTURE(BM_Gemv, q3_k, DType::kQ3_K)->Apply(kquant_shapes);
BENCHMARK_CAPTURE(BM_Gemv, q2_k, DType::kQ2_K)->Apply(kquant_shapes);
BENCHMARK_CAPTURE(BM_Gemm, bf16, DType::kBF16)->Apply(prefill_shapes);
BENCHMARK_CAPTURE(BM_Gemm, f32, DType::kF32)->Apply(prefill_shapes);
BENCHMARK_CAPTURE(BM_Gemm, q8_0, DType::kQ8_0)->Apply(prefill_shapes);
BENCHMARK_CAPTURE(BM_Gemm, q4_0, DType::kQ4_0)->Apply(prefill_shapes);
BENCHMARK_CAPTURE(BM_Gemm, q4_0_packed, DType::kQ4_0, true)->Apply(prefill_shapes);
BENCHMARK_CAPTURE(BM_Gemm, q8_0_packed, DType::kQ8_0, true)->Apply(prefill_shapes);
BENCHMARK_CAPTURE(BM_Gemm, q5_0, DType::kQ5_0)->Apply(prefill_shapes);
BENCHMARK_CAPTURE(BM_Gemm, q5_0_packed, DType::kQ5_0, true)->Apply(prefill_shapes);
BENCHMARK_CAPTURE(BM_GemmStep16, bf16, DType::kBF16)->Apply(shapes);
BENCHMARK_CAPTURE(BM_GemmStep16, q4_0_packed, DType::kQ4_0, true)->Apply(shapes);
BENCHMARK_CAPTURE(BM_GemmStep16, q8_0_packed, DType::kQ8_0, true)->Apply(shapes);
BENCHMARK_CAPTURE(BM_Gemm, q4_k, DType::kQ4_K)->Args({2048, 2048});
BENCHMARK_CAPTURE(BM_Gemm, q4_k_packed, DType::kQ4_K, true)->Args({2048, 2048});
BENCHMARK_CAPTURE(BM_Gemm, q6_k, DType::kQ6_K)->Args({2048, 2048});
BENCHMARK_CAPTURE(BM_Gemm, q2_k, DType::kQ2_K)->Args({2048, 2048});
BENCHMARK_CAPTURE(BM_Gemm, q2_k_packed, DType::kQ2_K, true)->Args({2048, 2048});
BENCHMARK_CAPTURE(BM_Gemm, q3_k, DType::kQ3_K)->Args({2048, 2048});
BENCHMARK_CAPTURE(BM_Gemm, q3_k_packed, DType::kQ3_K, true)->Args({2048, 2048});
BENCHMARK_CAPTURE(BM_Gemm, q5_k, DType::kQ5_K)->Args({2048, 2048});
BENCHMARK_CAPTURE(BM_Gemm, q5_k_packed, DType::kQ5_K, true)->Args({2048, 2048});
BENCHMARK_CAPTURE(BM_Gemm, q6_k_packed, DType::kQ6_K, true)->Args({2048, 2048});

// The arguments of one attention call over one head of 64 in blocks of 32 (the benchmarks'
// shape): n_q queries with their position limits, the blocks' key and value pointers.
AttentionArgs head64_args(DType kv_type, int64_t n_q, const float* q, const int32_t* limits, const void* const* k_blocks,
                          const void* const* v_blocks, float* out, float* scratch) {
  AttentionArgs a;
  a.q = q;
  a.q_stride = 64;
  a.q_limit = limits;
  a.n_q = n_q;
  a.k_blocks = k_blocks;
  a.v_blocks = v_blocks;
  a.block_size = 32;
  a.head_dim = 64;
  a.kv_type = kv_type;
  a.scale = 0.125f;
  a.out = out;
  a.out_stride = 64;
  a.scratch = scratch;
  return a;
}

// Attention of `queries` rows over `positions` cached positions, one head of 64, an f16 or
// q8_0 cache.
void BM_Attention(benchmark::State& state, DType kv_type) {
  const int64_t n_q = state.range(0), positions = state.range(1), hd = 64, bs = 32;
  const int64_t n_blocks = (positions + bs - 1) / bs;
  std::vector<Buffer> blocks;
  std::vector<const void*> kp, vp;
  for (int64_t b = 0; b < 2 * n_blocks; ++b) {
    blocks.emplace_back(bs * row_bytes(kv_type, hd));
    blocks.back().zero();
    (b % 2 ? vp : kp).push_back(blocks.back().data());
  }
  std::vector<float> q(n_q * hd, 0.1f), out(n_q * hd), scratch(attention_scratch_floats(n_q, n_blocks * bs, hd));
  std::vector<int32_t> limits(n_q);
  for (int64_t i = 0; i < n_q; ++i) limits[i] = static_cast<int32_t>(positions - n_q + i);
  const AttentionArgs a = head64_args(kv_type, n_q, q.data(), limits.data(), kp.data(), vp.data(), out.data(), scratch.data());
  for (auto _ : state) active().attention(a);
  double pairs = 0;
  for (int64_t i = 0; i < n_q; ++i) pairs += limits[i] + 1;
  state.counters["GFLOP/s"] = benchmark::Counter(4.0 * hd * pairs / 1e9, benchmark::Counter::kIsIterationInvariantRate);
}
// A continuous-batching decode step's attention, one thread: `seqs` sequences of `positions`
// cached positions each, SmolLM2-135M's 30 layers of 3 kv heads (3 queries each, head_dim 64),
// in a KvCache (f16 or q8_0, blocks of 32). The step's keys and values (f16: 23.6 MB for 16 x
// 64) are far larger than the L2, so every (sequence, kv head) item starts cold, as in a
// server's decode step (where the weights' stream runs between two layers' attention as well).
void BM_AttentionDecodeStep(benchmark::State& state, DType kv_type) {
  const int64_t seqs = state.range(0), positions = state.range(1);
  const int64_t layers = 30, heads = 3, group = 3, hd = 64;
  KvCache cache(layers, heads, hd, {seqs * ((positions + 31) / 32 * 32), 32, kv_type});
  cache.prefault();
  for (int32_t s = 0; s < seqs; ++s) cache.reserve(s, positions);
  const int64_t blocks_per_seq = static_cast<int64_t>(cache.block_table(0).size());
  std::vector<float> q(group * hd, 0.1f), out(group * hd), scratch(attention_scratch_floats(group, blocks_per_seq * 32, hd));
  std::vector<int32_t> limits(group, static_cast<int32_t>(positions - 1));
  std::vector<const void*> kp(blocks_per_seq), vp(blocks_per_seq);
  const AttentionArgs a = head64_args(kv_type, group, q.data(), limits.data(), kp.data(), vp.data(), out.data(), scratch.data());
  for (auto _ : state) {
    for (int64_t l = 0; l < layers; ++l)
      for (int32_t s = 0; s < seqs; ++s)
        for (int64_t h = 0; h < heads; ++h) {
          const std::vector<int32_t>& table = cache.block_table(s);
          for (int64_t b = 0; b < blocks_per_seq; ++b) {
            kp[b] = cache.k_block(l, table[b], h);
            vp[b] = cache.v_block(l, table[b], h);
          }
          active().attention(a);
        }
  }
  const double pairs = static_cast<double>(layers * seqs * heads * group * positions);
  state.counters["GFLOP/s"] = benchmark::Counter(4.0 * hd * pairs / 1e9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["GB/s"] = benchmark::Counter(static_cast<double>(cache.bytes()), benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK_CAPTURE(BM_AttentionDecodeStep, f16, DType::kF16)->Args({16, 64})->Args({16, 512})->Args({4, 1024})->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_AttentionDecodeStep, q8_0, DType::kQ8_0)->Args({16, 64})->Args({16, 512})->Unit(benchmark::kMicrosecond);

// A decode step's weight stream, read once per step from memory as a decode does (the set is
// far larger than the caches), one thread: SmolLM2-135M's 30 layers (range 0) or
// Qwen2.5-0.5B's 24 (range 1) of q, k, v, o, gate, up, down, against `m` rows of activations.
void model_stream(benchmark::State& state, DType type, int64_t m, bool w8a8 = false, bool packed = false) {
  struct Shape {
    int64_t n, k;
  };
  const bool qwen = state.range(0) == 1;
  const std::vector<Shape> layer =
      qwen ? std::vector<Shape>{{896, 896}, {128, 896}, {128, 896}, {896, 896}, {4864, 896}, {4864, 896}, {896, 4864}}
           : std::vector<Shape>{{576, 576}, {192, 576}, {192, 576}, {576, 576}, {1536, 576}, {1536, 576}, {576, 1536}};
  std::vector<GemmOperands> ops;
  size_t bytes = 0;
  for (int l = 0; l < (qwen ? 24 : 30); ++l)
    for (const Shape& s : layer) {
      ops.push_back(make_gemm_operands(type, m, s.n, s.k, std::numeric_limits<int64_t>::max(), w8a8, packed));
      bytes += ops.back().w.size();
    }
  for (auto _ : state)
    for (GemmOperands& o : ops) o.kernel.fn(o.args, 0, o.args.y_stride);
  state.counters["GB/s"] = benchmark::Counter(static_cast<double>(bytes), benchmark::Counter::kIsIterationInvariantRate);
  double flops = 0;
  for (const GemmOperands& o : ops) flops += 2.0 * m * o.args.k * static_cast<double>(o.args.y_stride);
  if (m > 1) state.counters["GFLOP/s"] = benchmark::Counter(flops / 1e9, benchmark::Counter::kIsIterationInvariantRate);
}
void BM_GemvModelStream(benchmark::State& state, DType type) { model_stream(state, type, 1); }
void BM_GemvModelStreamPacked(benchmark::State& state, DType type) { model_stream(state, type, 1, false, true); }
void BM_BatchModelStreamPacked(benchmark::State& state, DType type) { model_stream(state, type, state.range(1), false, true); }
// The same stream against M = range(1) rows: a continuous-batching decode step of M sequences
// (the server's 16 streams), one thread.
void BM_BatchModelStream(benchmark::State& state, DType type) { model_stream(state, type, state.range(1)); }
// int8_row weights through the W8A8 kernel (`--w8a8`), M = range(1).
void BM_W8A8ModelStream(benchmark::State& state) { model_stream(state, DType::kInt8Row, state.range(1), true); }
BENCHMARK_CAPTURE(BM_GemvModelStream, bf16, DType::kBF16)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_GemvModelStream, q8_0, DType::kQ8_0)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_GemvModelStream, q4_0, DType::kQ4_0)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_GemvModelStreamPacked, q8_0, DType::kQ8_0)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_GemvModelStreamPacked, q4_0, DType::kQ4_0)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_GemvModelStreamPacked, iq4_nl, DType::kIQ4_NL)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_GemvModelStreamPacked, nf4, DType::kNF4)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_BatchModelStreamPacked, q4_0, DType::kQ4_0)->Args({0, 4})->Args({0, 16})->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_BatchModelStreamPacked, q5_0, DType::kQ5_0)->Args({0, 16})->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_BatchModelStream, bf16, DType::kBF16)->Args({0, 4})->Args({0, 16})->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_BatchModelStream, q4_0, DType::kQ4_0)->Args({0, 4})->Args({0, 16})->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_BatchModelStream, int8_row, DType::kInt8Row)->Args({0, 1})->Args({0, 16})->Unit(benchmark::kMillisecond);
BENCHMARK(BM_W8A8ModelStream)->Args({0, 1})->Args({0, 16})->Unit(benchmark::kMillisecond);

BENCHMARK_CAPTURE(BM_Attention, f16, DType::kF16)->Args({1, 512})->Args({1, 4096})->Args({16, 512})->Args({4, 512})->Args({16, 64})->Args({64, 512});
BENCHMARK_CAPTURE(BM_Attention, q8_0, DType::kQ8_0)->Args({1, 512})->Args({1, 4096})->Args({16, 512});

}  // namespace
}  // namespace frugal::kernels
