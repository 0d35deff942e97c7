// The one loop of the compute-peak probes (kernels/cpu/*/probe_*.cc): 12 independent chains of
// one step each, enough to cover a multiply's latency on two pipes, then the chains summed and
// the sum kept where the compiler cannot drop it. Each ISA's file instantiates it with its own
// instructions and flags.
#pragma once

#include <cstdint>

namespace frugal::kernels {

inline constexpr int kProbeChains = 12;

// init(i): chain i's start; step(v): one step on a chain; add(a, b): two chains summed;
// keep(v): stores the sum in a volatile. `chains` below 12 where a step needs more registers
// than 12 chains leave free.
template <typename V, int chains = kProbeChains, typename Init, typename Step, typename Add, typename Keep>
void run_probe_chains(int64_t iterations, Init init, Step step, Add add, Keep keep) {
  V acc[chains];
#pragma GCC unroll 16
  for (int i = 0; i < chains; ++i) acc[i] = init(i);
  for (int64_t it = 0; it < iterations; ++it) {
#pragma GCC unroll 16
    for (int i = 0; i < chains; ++i) acc[i] = step(acc[i]);
  }
  V sum = acc[0];
#pragma GCC unroll 16
  for (int i = 1; i < chains; ++i) sum = add(sum, acc[i]);
  keep(sum);
}

}  // namespace frugal::kernels
