// A non-owning view of a dense tensor: data pointer, element type and shape.
//
// Shapes are written outermost first, as PyTorch and safetensors write them: a linear
// weight is [n_out, n_in] and row i holds the n_in weights of output i. Rows are contiguous
// and hold whole quantization blocks; a row's size in bytes is row_bytes(dtype, cols()).
// The storage (an mmap'd file, a Buffer) is owned elsewhere and must outlive the view.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>

#include "core/dtype.h"

namespace frugal {

struct Tensor {
  static constexpr int kMaxDims = 4;

  void* data = nullptr;
  DType dtype = DType::kF32;
  int ndim = 0;
  std::array<int64_t, kMaxDims> shape{};

  Tensor() = default;
  Tensor(void* data, DType dtype, std::initializer_list<int64_t> dims);

  bool empty() const { return data == nullptr; }
  int64_t dim(int i) const { return shape[i < 0 ? ndim + i : i]; }
  int64_t numel() const;
  int64_t cols() const { return ndim == 0 ? 1 : shape[ndim - 1]; }
  int64_t rows() const { return cols() == 0 ? 0 : numel() / cols(); }
  size_t row_stride() const { return row_bytes(dtype, cols()); }
  size_t nbytes() const { return static_cast<size_t>(rows()) * row_stride(); }

  template <typename T>
  T* as() const {
    return static_cast<T*>(data);
  }
  const uint8_t* row_ptr(int64_t r) const { return static_cast<const uint8_t*>(data) + r * row_stride(); }
  uint8_t* row_ptr(int64_t r) { return static_cast<uint8_t*>(data) + r * row_stride(); }

  std::string shape_string() const;  // "[4096, 256]"
};

}  // namespace frugal
