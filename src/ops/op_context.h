// What every op needs to run: the thread pool, per-forward scratch memory and the kernel table.
#pragma once

#include <cstdint>
#include <span>

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
  // W8A8 (`--w8a8`): int8_row weights multiply int8 activations quantized per token
  // (KernelTable::w8a8_int8_row) instead of the default per-32 q8_act ones.
  bool w8a8 = false;
  // The per-request adapter of each row of the batch (0: none), for the LoRA adapters whose
  // index is not 0 (linear.h); empty when no row has one. It describes the batch's rows, so
  // a product over other rows (the output head's, over the rows whose logits are wanted) must
  // not carry such adapters (lora_add_selected checks the row count).
  std::span<const int32_t> row_adapters = {};
};

// Row-wise work below this many elements runs on the calling thread: starting a parallel
// region costs more than it saves.
inline constexpr int64_t kSerialElements = 1 << 14;

// f(r0, r1) over the rows [0, n_rows) of width `width`: on the calling thread when the work is
// small or one row, else split across the pool.
template <typename F>
void for_rows(OpContext& ctx, int64_t n_rows, int64_t width, F&& f) {
  if (n_rows * width <= kSerialElements || n_rows == 1) {
    f(int64_t{0}, n_rows);
  } else {
    ctx.pool.parallel_for(n_rows, f);
  }
}

}  // namespace frugal
