#include "quant/formats/quantize_rows.h"

#include <array>

#include <fmt/format.h>

#include "core/check.h"
#include "quant/formats/frugal_blocks.h"

namespace frugal {
namespace {

struct Entry {
  QuantizeRowsFn fn = nullptr;
  bool whole_tensor = false;
};

std::array<Entry, static_cast<size_t>(DType::kCount)>& table() {
  static std::array<Entry, static_cast<size_t>(DType::kCount)> t{};
  return t;
}

}  // namespace

bool register_rows_quantizer(DType type, QuantizeRowsFn fn, bool whole_tensor) {
  Entry& e = table()[static_cast<size_t>(type)];
  FRUGAL_CHECK(e.fn == nullptr, "rows quantizer of type {} registered twice", static_cast<int>(type));
  e = {fn, whole_tensor};
  return true;
}

QuantizeRowsFn rows_quantizer(DType type) { return table()[static_cast<size_t>(type)].fn; }
bool quantizes_whole_tensor(DType type) { return table()[static_cast<size_t>(type)].whole_tensor; }

std::string row_length_problem(DType type, int64_t n_cols) {
  const DTypeTraits& t = dtype_traits(type);
  if (t.from_float == nullptr) return fmt::format("frugal cannot produce {} tensors", t.name);
  if (n_cols <= 0 || n_cols % t.block_size != 0)
    return fmt::format("rows of {} elements are not a whole number of {} blocks of {}", n_cols, t.name, t.block_size);
  if (type == DType::kInt8Row && n_cols < kInt8RowMinCols)
    return fmt::format("rows of {} elements are too short for {} (at least {}, to hold the row's scale)", n_cols,
                       t.name, kInt8RowMinCols);
  return {};
}

void quantize_rows(DType type, const float* src, void* dst, int64_t n_rows, int64_t n_cols, const float* importance) {
  const std::string problem = row_length_problem(type, n_cols);
  FRUGAL_CHECK(problem.empty(), "{}", problem);
  if (const QuantizeRowsFn fn = rows_quantizer(type)) {
    fn(src, dst, n_rows, n_cols, importance);
    return;
  }
  const DTypeTraits& t = dtype_traits(type);
  const size_t stride = row_bytes(type, n_cols);
  for (int64_t r = 0; r < n_rows; ++r) t.from_float(src + r * n_cols, static_cast<uint8_t*>(dst) + r * stride, n_cols);
}

}  // namespace frugal
