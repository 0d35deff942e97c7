// Quantizing a weight matrix, with an optional importance per input column.
//
// The dtype table's from_float quantizes a run of elements with the format's reference search.
// Quantizing a weight matrix can do better when it knows how much each input column matters:
// llama.cpp weighs every element's error by an "importance matrix" (the mean square of the
// activations that column multiplies) in its K-quant / IQ4_NL / Q4_0... searches, and GPTQ's
// and AWQ's searches use the same statistic. A format that can use it registers a rows
// quantizer here from its own file; the others are quantized row by row with from_float.
//
// Rows quantizers also carry per-tensor semantics that from_float, which sees a run of
// elements, cannot express: cb4 learns one codebook over all rows it is given.
#pragma once

#include <cstdint>
#include <string>

#include "core/dtype.h"

namespace frugal {

// Quantizes n_rows rows of n_cols floats (row-major) into n_rows rows of row_bytes(type,
// n_cols) bytes. importance: [n_cols] non-negative weights of the columns' errors, or null for
// the format's default weighting (for GGML types: the bytes from_float produces, as
// llama-quantize without an imatrix).
using QuantizeRowsFn = void (*)(const float* src, void* dst, int64_t n_rows, int64_t n_cols, const float* importance);

// Called from the format's file (static initialiser). whole_tensor: the quantizer learns
// something from all the rows it is given (cb4's codebook), so a tensor must be passed in one
// call; otherwise callers may split the rows among threads.
bool register_rows_quantizer(DType type, QuantizeRowsFn fn, bool whole_tensor = false);
// The registered quantizer, or null.
QuantizeRowsFn rows_quantizer(DType type);
bool quantizes_whole_tensor(DType type);
// True when the type's quantizer uses an importance (an imatrix changes its output).
inline bool uses_importance(DType type) { return rows_quantizer(type) != nullptr; }

// Empty when rows of n_cols elements can be quantized to `type`; otherwise why not ("rows of 96
// elements are not a whole number of q4_k blocks of 256").
std::string row_length_problem(DType type, int64_t n_cols);

// Quantizes with the registered quantizer, or row by row with from_float (importance unused).
// The type must have a quantizer and n_cols must pass row_length_problem (checked).
void quantize_rows(DType type, const float* src, void* dst, int64_t n_rows, int64_t n_cols, const float* importance);

}  // namespace frugal
