// Micro-benchmarks of the quantized-weight kernels, one thread, per format:
//   BM_QuantGemvL2:   decode GEMV on a 576 x 1536 matrix that stays in L2 (the kernel's
//                     instruction cost: ns per 32 weights is printed as ns/blk32)
//   BM_QuantGemvDram: decode GEMV on 32768 x 2048 weights (64 M weights, far beyond L3):
//                     the streaming rate (GB/s of weights read)
//   BM_QuantGemm:     prefill, 512 rows x 1536 x 576 (GFLOP/s; k rounded up to whole blocks)
//   build/bench/frugal_microbench --benchmark_filter=Quant
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "core/buffer.h"
#include "kernels/kernels.h"

namespace frugal::kernels {
namespace {

struct QOperands {
  Buffer w, x;
  std::vector<float> y;
  GemmArgs args;
  GemmKernel kernel;
};

QOperands make_operands(DType type, int64_t m, int64_t n, int64_t k) {
  const KernelTable& t = active();
  QOperands o;
  o.kernel = gemm_for(t, type);
  std::mt19937 rng(1);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> row(k);
  const size_t w_stride = row_bytes(type, k);
  o.w = Buffer(w_stride * n);
  // Quantizing 64 M weights per format takes long: quantize 64 rows and repeat them.
  for (int64_t r = 0; r < n; ++r) {
    if (r < 64) {
      for (auto& v : row) v = dist(rng);
      dtype_traits(type).from_float(row.data(), o.w.as<uint8_t>() + r * w_stride, k);
    } else {
      std::copy_n(o.w.as<uint8_t>() + (r % 64) * w_stride, w_stride, o.w.as<uint8_t>() + r * w_stride);
    }
  }
  const size_t x_stride = row_bytes(o.kernel.act, k);
  o.x = Buffer(x_stride * m);
  for (int64_t r = 0; r < m; ++r) {
    for (auto& v : row) v = dist(rng);
    t.convert[static_cast<size_t>(o.kernel.act)] != nullptr
        ? t.convert[static_cast<size_t>(o.kernel.act)](row.data(), o.x.as<uint8_t>() + r * x_stride, k)
        : dtype_traits(o.kernel.act).from_float(row.data(), o.x.as<uint8_t>() + r * x_stride, k);
  }
  o.y.resize(m * n);
  o.args = {o.x.data(), x_stride, o.w.data(), w_stride, o.y.data(), static_cast<size_t>(n), m, k};
  return o;
}

void BM_QuantGemvL2(benchmark::State& state, DType type) {
  const int64_t n = 576, k = 1536;
  QOperands o = make_operands(type, 1, n, k);
  for (auto _ : state) o.kernel.fn(o.args, 0, n);
  state.counters["GB/s"] = benchmark::Counter(static_cast<double>(o.w.size()), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["ns/blk32"] =
      benchmark::Counter(static_cast<double>(n * k / 32) * 1e-9, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

void BM_QuantGemvDram(benchmark::State& state, DType type) {
  const int64_t n = 32768, k = 2048;
  QOperands o = make_operands(type, 1, n, k);
  for (auto _ : state) o.kernel.fn(o.args, 0, n);
  state.counters["GB/s"] = benchmark::Counter(static_cast<double>(o.w.size()), benchmark::Counter::kIsIterationInvariantRate);
}

void BM_QuantGemm(benchmark::State& state, DType type) {
  // k = 576, rounded up to whole blocks for the 128- and 256-element formats (640, 768)
  const int64_t bs = dtype_traits(type).block_size;
  const int64_t m = 512, n = 1536, k = (576 + bs - 1) / bs * bs;
  QOperands o = make_operands(type, m, n, k);
  for (auto _ : state) o.kernel.fn(o.args, 0, n);
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * m * n * k / 1e9, benchmark::Counter::kIsIterationInvariantRate);
}

#define FRUGAL_QUANT_BENCH(name, type)                  \
  BENCHMARK_CAPTURE(BM_QuantGemvL2, name, type);        \
  BENCHMARK_CAPTURE(BM_QuantGemvDram, name, type)->Iterations(20); \
  BENCHMARK_CAPTURE(BM_QuantGemm, name, type)

FRUGAL_QUANT_BENCH(bf16, DType::kBF16);
FRUGAL_QUANT_BENCH(q8_0, DType::kQ8_0);
FRUGAL_QUANT_BENCH(q4_0, DType::kQ4_0);
FRUGAL_QUANT_BENCH(q4_1, DType::kQ4_1);
FRUGAL_QUANT_BENCH(iq4_nl, DType::kIQ4_NL);
FRUGAL_QUANT_BENCH(nf4, DType::kNF4);
FRUGAL_QUANT_BENCH(int4_g32, DType::kInt4G32);
FRUGAL_QUANT_BENCH(int4_g64, DType::kInt4G64);
FRUGAL_QUANT_BENCH(int4_g128, DType::kInt4G128);
FRUGAL_QUANT_BENCH(int8_row, DType::kInt8Row);
FRUGAL_QUANT_BENCH(q4_k, DType::kQ4_K);
FRUGAL_QUANT_BENCH(q6_k, DType::kQ6_K);
FRUGAL_QUANT_BENCH(cb4, DType::kCB4);

}  // namespace
}  // namespace frugal::kernels
