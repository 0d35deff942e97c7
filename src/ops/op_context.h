// What every op needs to run: the thread pool, per-forward scratch memory and the kernel table.
#pragma once

#include "core/arena.h"
#include "core/thread_pool.h"
#include "kernels/kernels.h"

namespace frugal {

class LinearObserver;  // ops/linear.h

struct OpContext {
  ThreadPool& pool;
  Arena& arena;
  const kernels::KernelTable& kernels;
  // Sees the input of every linear product (calibration for quantization); null in inference,
  // where linear() pays one pointer test for it.
  LinearObserver* observer = nullptr;
};

}  // namespace frugal
