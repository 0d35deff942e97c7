// What this machine can do at best, measured in the same run as the thing being judged:
// memory read bandwidth (the bound of decode) and the FMA peak (the bound of prefill).
// Shared machines vary from minute to minute, so a figure is only meaningful as a fraction
// of limits measured alongside it.
#pragma once

#include "core/dtype.h"
#include "core/thread_pool.h"
#include "kernels/kernels.h"

namespace frugal {

struct MachineLimits {
  double read_bandwidth = 0;  // bytes/s, all pool threads streaming a buffer far larger than caches
  double fma_peak = 0;        // fp32 FLOP/s, all pool threads
  double bf16_dot_peak = 0;   // FLOP/s of the bf16 dot-product instruction (0 when absent)
  double int8_dot_peak = 0;   // FLOP/s (2 per product) of the integer kernels' int8 products

  struct Unit {
    double peak;       // FLOP/s
    const char* name;  // "fp32 FMA", "bf16 dot", "int8 dot"
  };
  // The unit a product whose activations are converted to `act` runs on (the GemmKernel's
  // act: f32 -> FMA, bf16 -> bf16 dot, int8 -> int8 dot), the FMA when that unit was not
  // measured.
  Unit unit_for(DType act) const;
  // Each figure the higher of this and `other` (two measurements of a drifting machine).
  MachineLimits best_with(const MachineLimits& other) const;
};

// Takes about a second. Best of several passes, as a peak should be.
MachineLimits measure_machine_limits(ThreadPool& pool, const kernels::KernelTable& kernels);

}  // namespace frugal
