// What every op needs to run: the thread pool, per-forward scratch memory and the kernel table.
#pragma once

#include "core/arena.h"
#include "core/thread_pool.h"
#include "kernels/kernels.h"

namespace frugal {

struct OpContext {
  ThreadPool& pool;
  Arena& arena;
  const kernels::KernelTable& kernels;
};

}  // namespace frugal
