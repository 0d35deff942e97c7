#include "perf/machine_limits.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <vector>

#include "core/buffer.h"

namespace frugal {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

MachineLimits measure_machine_limits(ThreadPool& pool, const kernels::KernelTable& k) {
  MachineLimits limits;
  const int threads = pool.size();

  // Bandwidth: 1 GiB, far beyond the last-level cache, touched once so the pages exist, then
  // read in contiguous pieces that the threads take in turn.
  constexpr size_t kBytes = size_t{1} << 30;
  Buffer buffer(kBytes);
  const int64_t n = kBytes / sizeof(float);
  pool.parallel_for(n, [&](int64_t b, int64_t e) { std::memset(buffer.as<float>() + b, 0, (e - b) * sizeof(float)); }, 64);
  // Each piece keeps its sum in its own slot (the pieces go to whichever thread is free, so a
  // slot per thread would be written by two at once).
  const int64_t pieces = 4 * static_cast<int64_t>(threads);
  std::vector<float> sinks(static_cast<size_t>(pieces));
  const auto piece_start = [&](int64_t p) { return p == pieces ? n : n * p / pieces / 64 * 64; };
  for (int pass = 0; pass < 5; ++pass) {
    const auto t0 = std::chrono::steady_clock::now();
    pool.run_items(pieces, [&](int64_t p, int) {
      sinks[p] = k.read_stream(buffer.as<float>() + piece_start(p), piece_start(p + 1) - piece_start(p));
    });
    limits.read_bandwidth = std::max(limits.read_bandwidth, kBytes / seconds_since(t0));
  }

  // Compute peaks: every thread runs the loop; long enough (~50 ms) to reach full clocks.
  auto peak = [&](double (*loop)(int64_t)) {
    double best = 0;
    for (int pass = 0; pass < 3; ++pass) {
      std::vector<double> flops(threads);
      const auto t0 = std::chrono::steady_clock::now();
      pool.run([&](int t) { flops[t] = loop(int64_t{20} << 20); });
      double total = 0;
      for (double f : flops) total += f;
      best = std::max(best, total / seconds_since(t0));
    }
    return best;
  };
  limits.fma_peak = peak(k.fma_loop);
  if (k.bf16_dot_loop != nullptr) limits.bf16_dot_peak = peak(k.bf16_dot_loop);
  if (k.int8_dot_loop != nullptr) limits.int8_dot_peak = peak(k.int8_dot_loop);
  return limits;
}

MachineLimits MachineLimits::best_with(const MachineLimits& o) const {
  return {std::max(read_bandwidth, o.read_bandwidth), std::max(fma_peak, o.fma_peak),
          std::max(bf16_dot_peak, o.bf16_dot_peak), std::max(int8_dot_peak, o.int8_dot_peak)};
}

MachineLimits::Unit MachineLimits::unit_for(DType act) const {
  if (act == DType::kBF16 && bf16_dot_peak > 0) return {bf16_dot_peak, "bf16 dot"};
  if (act == DType::kQ8Act && int8_dot_peak > 0) return {int8_dot_peak, "int8 dot"};
  return {fma_peak, "fp32 FMA"};
}

}  // namespace frugal
