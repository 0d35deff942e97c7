// Round-to-nearest: each weight block quantized on its own by the format's quantizer, with an
// importance per input column when one is known (an imatrix: llama.cpp's weighted searches).
// The baseline every other method is measured against, and the step AWQ ends with.
#pragma once

#include <cstdint>
#include <vector>

#include "core/buffer.h"
#include "core/dtype.h"
#include "core/thread_pool.h"

namespace frugal {

// w [n_rows, n_cols] -> n_rows rows of row_bytes(type, n_cols); importance [n_cols] or null.
// Rows are split among the pool's threads unless the format learns from the whole tensor.
Buffer rtn_quantize(DType type, const float* w, int64_t n_rows, int64_t n_cols, const float* importance,
                    ThreadPool& pool);

// The values a quantized matrix stands for, [n_rows, n_cols].
std::vector<float> dequantize_matrix(DType type, const void* data, int64_t n_rows, int64_t n_cols, ThreadPool& pool);

}  // namespace frugal
