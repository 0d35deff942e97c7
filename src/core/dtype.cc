#include "core/dtype.h"

#include <array>
#include <cstring>

#include "core/check.h"
#include "core/half.h"

namespace frugal {
namespace {

std::array<DTypeTraits, static_cast<size_t>(DType::kCount)>& table() {
  static std::array<DTypeTraits, static_cast<size_t>(DType::kCount)> t{};
  return t;
}

void f32_to_float(const void* src, float* dst, int64_t n) { std::memcpy(dst, src, n * sizeof(float)); }
void f32_from_float(const float* src, void* dst, int64_t n) { std::memcpy(dst, src, n * sizeof(float)); }

void f16_to_float(const void* src, float* dst, int64_t n) {
  const auto* s = static_cast<const uint16_t*>(src);
  for (int64_t i = 0; i < n; ++i) dst[i] = f16_to_f32(s[i]);
}
void f16_from_float(const float* src, void* dst, int64_t n) {
  auto* d = static_cast<uint16_t*>(dst);
  for (int64_t i = 0; i < n; ++i) d[i] = f32_to_f16(src[i]);
}
void bf16_to_float(const void* src, float* dst, int64_t n) {
  const auto* s = static_cast<const uint16_t*>(src);
  for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(s[i]);
}
void bf16_from_float(const float* src, void* dst, int64_t n) {
  auto* d = static_cast<uint16_t*>(dst);
  for (int64_t i = 0; i < n; ++i) d[i] = f32_to_bf16(src[i]);
}
template <typename T>
void int_to_float(const void* src, float* dst, int64_t n) {
  const T* s = static_cast<const T*>(src);
  for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<float>(s[i]);
}

const bool kRegistered = [] {
  register_dtype(DType::kF32, {"f32", 1, 4, 0, true, f32_to_float, f32_from_float});
  register_dtype(DType::kF16, {"f16", 1, 2, 1, true, f16_to_float, f16_from_float});
  register_dtype(DType::kBF16, {"bf16", 1, 2, 30, true, bf16_to_float, bf16_from_float});
  register_dtype(DType::kI8, {"i8", 1, 1, 24, false, int_to_float<int8_t>, nullptr});
  register_dtype(DType::kI16, {"i16", 1, 2, 25, false, int_to_float<int16_t>, nullptr});
  register_dtype(DType::kI32, {"i32", 1, 4, 26, false, int_to_float<int32_t>, nullptr});
  return true;
}();

}  // namespace

bool register_dtype(DType type, const DTypeTraits& traits) {
  auto index = static_cast<size_t>(type);
  FRUGAL_CHECK(index < table().size());
  FRUGAL_CHECK(table()[index].name == nullptr, "dtype {} registered twice", traits.name);
  FRUGAL_CHECK(traits.block_size > 0 && traits.block_bytes > 0);
  table()[index] = traits;
  return true;
}

bool dtype_registered(DType type) {
  auto index = static_cast<size_t>(type);
  return index < table().size() && table()[index].name != nullptr;
}

const DTypeTraits& dtype_traits(DType type) {
  (void)kRegistered;
  FRUGAL_CHECK(dtype_registered(type), "dtype {} is not registered", static_cast<int>(type));
  return table()[static_cast<size_t>(type)];
}

size_t row_bytes(DType type, int64_t n) {
  const DTypeTraits& t = dtype_traits(type);
  FRUGAL_CHECK(n % t.block_size == 0, "row of {} elements is not a whole number of {} blocks", n, t.name);
  return static_cast<size_t>(n / t.block_size) * t.block_bytes;
}

double bits_per_weight(DType type) {
  const DTypeTraits& t = dtype_traits(type);
  return 8.0 * static_cast<double>(t.block_bytes) / t.block_size;
}

std::optional<DType> dtype_from_name(std::string_view name) {
  for (size_t i = 0; i < table().size(); ++i)
    if (table()[i].name != nullptr && name == table()[i].name) return static_cast<DType>(i);
  return std::nullopt;
}

std::optional<DType> dtype_from_gguf(int gguf_type) {
  for (size_t i = 0; i < table().size(); ++i)
    if (table()[i].name != nullptr && table()[i].gguf_type == gguf_type) return static_cast<DType>(i);
  return std::nullopt;
}

}  // namespace frugal
