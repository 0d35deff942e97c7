// GPTQ (Frantar et al., 2022): quantizes a weight matrix one column at a time and pushes each
// column's rounding error onto the columns not yet quantized, in the direction that keeps the
// layer's outputs on the calibration inputs closest: the error is propagated through the
// inverse of the Hessian H = 2/N sum(x x^T) of the layer's inputs.
//
// As the reference implementation (IST-DASLab/gptq, fasterquant): dead inputs (H_ii = 0) get
// zero weights; dampening adds damp * mean(diag H) to the diagonal; the propagation uses the
// upper Cholesky factor of H^-1 (computed in double precision: Cholesky of H, its inverse,
// Cholesky of that); columns go in batches of 128 ("lazy batch updates": within a batch each
// column updates the batch's own columns, the rest of the matrix gets the batch's errors at
// once); act-order takes columns by decreasing H_ii.
//
// Groups are the format's blocks (BlockCodec): a block's parameters are fitted, with diag(H)
// as importance, when GPTQ reaches the block's first column, from the weights as updated by
// then (the reference's groupsize behaviour). With act-order, columns of one block are no
// longer consecutive, so every block is fitted up front from the original weights (AutoGPTQ's
// static_groups), which keeps block formats whose groups are contiguous usable with it.
#pragma once

#include <cstdint>

#include "core/dtype.h"
#include "core/thread_pool.h"

namespace frugal {

struct GptqOptions {
  double damp = 0.01;          // fraction of mean(diag H) added to the diagonal
  bool act_order = true;       // columns by decreasing H_ii (static groups)
  int64_t batch_columns = 128; // lazy-batch width (raised to the format's block when larger)
};

struct GptqResult {
  double loss = 0;  // the reference's error: sum over weights of (w - q)^2 / (2 [H^-1]_cc^2)
  int dampening_retries = 0;  // times the dampening was multiplied by 10 to make H invertible
};

// Quantizes w [n_out, n_in] (row-major) to `type` (gptq_supports(type)) given the Hessian h
// [n_in, n_in] (row-major, symmetric; any positive multiple of sum(x x^T) gives the same
// result). Writes n_out rows of row_bytes(type, n_in) bytes to dst. Rows are independent and
// split among the pool's threads. Throws frugal::Error when H cannot be made positive definite.
GptqResult gptq_quantize(const float* w, int64_t n_out, int64_t n_in, const double* h, DType type,
                         const GptqOptions& options, ThreadPool& pool, uint8_t* dst);

}  // namespace frugal
