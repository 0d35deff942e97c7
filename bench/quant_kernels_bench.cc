// Micro-benchmarks of the quantized-weight kernels, one thread, per format:
//   BM_QuantGemvL2:   decode GEMV on a 576 x 1536 matrix that stays in L2 (the kernel's
//                     instruction cost: ns per 32 weights is printed as ns/blk32)
//   BM_QuantGemvDram: decode GEMV on 32768 x 2048 weights (64 M weights, far beyond L3):
//                     the streaming rate (GB/s of weights read)
//   BM_QuantGemm:     prefill, 512 rows x 1536 x 576 (GFLOP/s; k rounded up to whole blocks)
//   build/bench/frugal_microbench --benchmark_filter=Quant
#include <benchmark/benchmark.h>

#include "gemm_operands.h"
#include "kernels/kernels.h"

namespace frugal::kernels {
namespace {

using bench::GemmOperands;

// Quantizing 64 M weights per format takes long: 64 distinct rows, repeated.
GemmOperands make_operands(DType type, int64_t m, int64_t n, int64_t k) { return bench::make_gemm_operands(type, m, n, k, 64); }

void BM_QuantGemvL2(benchmark::State& state, DType type) {
  const int64_t n = 576, k = 1536;
  GemmOperands o = make_operands(type, 1, n, k);
  for (auto _ : state) o.kernel.fn(o.args, 0, n);
  state.counters["GB/s"] = benchmark::Counter(static_cast<double>(o.w.size()), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["ns/blk32"] =
      benchmark::Counter(static_cast<double>(n * k / 32) * 1e-9, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

void BM_QuantGemvDram(benchmark::State& state, DType type) {
  const int64_t n = 32768, k = 2048;
  GemmOperands o = make_operands(type, 1, n, k);
  for (auto _ : state) o.kernel.fn(o.args, 0, n);
  state.counters["GB/s"] = benchmark::Counter(static_cast<double>(o.w.size()), benchmark::Counter::kIsIterationInvariantRate);
}

void BM_QuantGemm(benchmark::State& state, DType type) {
  // k = 576, rounded up to whole blocks for the 128- and 256-element formats (640, 768)
  const int64_t bs = dtype_traits(type).block_size;
  const int64_t m = 512, n = 1536, k = (576 + bs - 1) / bs * bs;
  GemmOperands o = make_operands(type, m, n, k);
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
