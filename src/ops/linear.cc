#include "ops/linear.h"

#include <algorithm>

#include "core/check.h"
#include "ops/grad/matmul.h"

namespace frugal {
namespace {

struct Prepared {
  kernels::GemmKernel kernel;
  kernels::GemmArgs args;
  int64_t n_out;
};

// Converts x into the kernel's activation type once (shared by every thread), or uses it as is.
Prepared prepare(OpContext& ctx, const Linear& layer, const float* x, int64_t n_rows, float* y,
                 const void** converted_cache, DType* converted_type) {
  const Tensor& w = layer.weight;
  FRUGAL_CHECK(w.ndim == 2, "linear '{}' weight must be 2-D", layer.name);
  const int64_t k = w.dim(1);
  Prepared p;
  p.kernel = kernels::gemm_for(ctx.kernels, w.dtype, ctx.w8a8);
  p.n_out = w.dim(0);
  p.args.w = w.data;
  // The packed copy: the same rows in huge pages (lanes 0), or interleaved for the table's
  // packed product if this table's lane count is the one it was made for.
  const auto& packed = ctx.kernels.packed[static_cast<size_t>(w.dtype)];
  if (!layer.packed.empty() && (layer.packed_lanes == 0 || packed.lanes == layer.packed_lanes)) {
    if (layer.packed_lanes != 0) p.kernel = packed.kernel;
    p.args.w = layer.packed.data;
  }
  p.args.w_stride = w.row_stride();
  p.args.y = y;
  p.args.y_stride = static_cast<size_t>(p.n_out);
  p.args.m = n_rows;
  p.args.k = k;
  if (p.kernel.act == DType::kF32) {
    p.args.x = x;
    p.args.x_stride = static_cast<size_t>(k) * sizeof(float);
    return p;
  }
  const size_t stride = row_bytes(p.kernel.act, k);
  if (*converted_cache == nullptr || *converted_type != p.kernel.act) {
    void* buffer = ctx.arena.allocate(stride * n_rows);
    const kernels::ConvertFn convert = ctx.kernels.convert[static_cast<size_t>(p.kernel.act)];
    FRUGAL_CHECK(convert != nullptr, "no conversion to {}", dtype_name(p.kernel.act));
    for_rows(ctx, n_rows, k, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) convert(x + r * k, static_cast<uint8_t*>(buffer) + r * stride, k);
    });
    *converted_cache = buffer;
    *converted_type = p.kernel.act;
  }
  p.args.x = *converted_cache;
  p.args.x_stride = stride;
  return p;
}

void add_bias(OpContext& ctx, const Linear& layer, float* y, int64_t n_rows) {
  if (layer.bias.empty()) return;
  const float* b = layer.bias.as<const float>();
  const int64_t n = layer.n_out();
  for (int64_t r = 0; r < n_rows; ++r) ctx.kernels.add(y + r * n, b, n);
}

// Columns per work item. Items are handed out dynamically, so a thread that the OS
// deschedules (a shared machine, CI running two tests on two cores) delays only its current
// item: the others take the rest. Up to kSliceRows rows (decode, and the server's batched
// decode steps) each thread gets one contiguous slice: one long sequential stream per thread
// is what the prefetchers serve best while the weights still come from memory (smollm2-135m:
// ~10% more decode speed than 64 KB items; 16-row forwards ~15% faster than 8 items per
// product), and a descheduled thread's slice is still taken by the other. Longer prefills,
// compute-bound, get several items per thread.
constexpr int64_t kSliceRows = 64;
int64_t chunk_columns(const Prepared& p, int threads) {
  const int64_t block = std::max<int64_t>(p.kernel.n_block, 1);
  int64_t columns;
  if (p.args.m <= kSliceRows) {
    columns = (p.n_out + threads - 1) / threads;
  } else {
    columns = std::min<int64_t>(p.n_out / (4 * threads), 1024);
  }
  columns = std::max<int64_t>(columns, block);
  return (columns + block - 1) / block * block;
}

}  // namespace

void linear(OpContext& ctx, const Linear& layer, const float* x, int64_t n_rows, float* y) {
  LinearOutput out{&layer, y};
  linear_multi(ctx, &out, 1, x, n_rows);
}

void linear_multi(OpContext& ctx, const LinearOutput* outputs, int count, const float* x, int64_t n_rows) {
  constexpr int kMax = 4;
  FRUGAL_CHECK(count >= 1 && count <= kMax);
  if (ctx.observer != nullptr) [[unlikely]]
    for (int i = 0; i < count; ++i) ctx.observer->observe(*outputs[i].layer, x, n_rows);
  Prepared prepared[kMax];
  const void* converted = nullptr;
  DType converted_type = DType::kF32;
  for (int i = 0; i < count; ++i) {
    FRUGAL_CHECK(outputs[i].layer->n_in() == outputs[0].layer->n_in(), "linear_multi inputs differ");
    prepared[i] = prepare(ctx, *outputs[i].layer, x, n_rows, outputs[i].y, &converted, &converted_type);
  }
  // Work items (product, column range), taken in order from a shared counter.
  struct Item {
    int product;
    int64_t n0, n1;
  };
  Item items[256];
  int n_items = 0;
  const int threads = ctx.pool.size();
  for (int i = 0; i < count; ++i) {
    const int64_t n = prepared[i].n_out;
    int64_t columns = chunk_columns(prepared[i], threads);
    // Keep the item list bounded: coarser chunks for very wide products.
    while ((n + columns - 1) / columns > 256 / count) columns *= 2;
    for (int64_t n0 = 0; n0 < n; n0 += columns) items[n_items++] = {i, n0, std::min(n, n0 + columns)};
  }
  ctx.pool.run_items(n_items, [&](int64_t it, int) {
    const Prepared& p = prepared[items[it].product];
    p.kernel.fn(p.args, items[it].n0, items[it].n1);
  });
  for (int i = 0; i < count; ++i) add_bias(ctx, *outputs[i].layer, outputs[i].y, n_rows);
  // The LoRA step, after the base product: unmerged adapters add their low-rank update.
  for (int i = 0; i < count; ++i)
    for (const LoraAdapter& adapter : outputs[i].layer->lora) {
      if (adapter.index == 0) {
        lora_add(ctx, adapter, x, n_rows, outputs[i].y);
      } else if (!ctx.row_adapters.empty()) {
        lora_add_selected(ctx, adapter, x, n_rows, outputs[i].y);
      }
    }
}

void lora_add_selected(OpContext& ctx, const LoraAdapter& adapter, const float* x, int64_t n_rows, float* y) {
  FRUGAL_CHECK(static_cast<int64_t>(ctx.row_adapters.size()) == n_rows, "{} row adapters for a product of {} rows",
               ctx.row_adapters.size(), n_rows);
  const int32_t* of = ctx.row_adapters.data();
  int64_t first = -1, last = -1, count = 0;
  for (int64_t r = 0; r < n_rows; ++r) {
    if (of[r] != adapter.index) continue;
    if (first < 0) first = r;
    last = r;
    ++count;
  }
  if (count == 0) return;
  const int64_t n_in = adapter.a.dim(1), n_out = adapter.b.dim(0);
  // One run of rows (a prompt chunk, or every row of the step): in place.
  if (last - first + 1 == count) {
    lora_add(ctx, adapter, x + first * n_in, count, y + first * n_out);
    return;
  }
  // Scattered rows (decode rows of several requests): gathered, x and y alike, into one product
  // and put back. lora_add computes each row on its own, so every row gets exactly what it
  // would alone, at one product rather than one per row.
  float* gx = ctx.arena.allocate<float>(count * n_in);
  float* gy = ctx.arena.allocate<float>(count * n_out);
  for (int64_t r = first, g = 0; r <= last; ++r) {
    if (of[r] != adapter.index) continue;
    std::copy_n(x + r * n_in, n_in, gx + g * n_in);
    std::copy_n(y + r * n_out, n_out, gy + g * n_out);
    ++g;
  }
  lora_add(ctx, adapter, gx, count, gy);
  for (int64_t r = first, g = 0; r <= last; ++r) {
    if (of[r] != adapter.index) continue;
    std::copy_n(gy + g * n_out, n_out, y + r * n_out);
    ++g;
  }
}

void lora_add(OpContext& ctx, const LoraAdapter& adapter, const float* x, int64_t n_rows, float* y, float* h) {
  const Tensor& a = adapter.a;
  const Tensor& b = adapter.b;
  FRUGAL_CHECK(a.ndim == 2 && b.ndim == 2 && a.dtype == DType::kF32 && b.dtype == DType::kF32 && a.dim(0) == b.dim(1),
               "LoRA adapter shapes {} and {}", a.shape_string(), b.shape_string());
  const int64_t rank = a.dim(0), n_in = a.dim(1), n_out = b.dim(0);
  if (h == nullptr) h = ctx.arena.allocate<float>(n_rows * rank);
  // h = x·Aᵀ in the forward (dot-product) form; then y += h·(scale·Bᵀ) in axpy form, whose
  // rank-long reduction vectorises along the n_out outputs instead of along the short rank.
  matmul_nt(ctx, x, n_in, a.as<const float>(), n_in, h, rank, n_rows, rank, n_in);
  const float* bt = adapter.scaled_bt.empty() ? nullptr : adapter.scaled_bt.as<const float>();  // [rank, n_out]
  if (bt == nullptr) {
    float* t = ctx.arena.allocate<float>(rank * n_out);
    transpose_scaled(b.as<const float>(), n_out, rank, adapter.scale, t);
    bt = t;
  }
  matmul_nn(ctx, h, rank, bt, n_out, y, n_out, n_rows, n_out, rank, /*accumulate=*/true);
}

}  // namespace frugal
