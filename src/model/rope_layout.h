// Where a q/k row of a Hugging Face Llama checkpoint goes in a GGUF (or llama2.c) file.
//
// Hugging Face rotates the first n_rot dimensions of a head in two halves (rotate_half: i with
// n_rot/2 + i); GGUF Llama files and llama2.c rotate neighbours (2i with 2i + 1), so llama.cpp's
// converter reorders the rows of q and k (and their biases): row h*D + 2i + j of the pairwise
// layout is row h*D + j*n_rot/2 + i of the halves layout. Only the rotary part moves: the
// dimensions past n_rot (partial_rotary_factor < 1) keep their place, so that both layouts
// rotate the same pairs.
#pragma once

#include <cstdint>

namespace frugal {

// The Hugging Face row that pairwise row `row` holds.
inline int64_t hf_row_of_pairwise(int64_t row, int64_t head_dim, int64_t n_rot) {
  const int64_t head = row / head_dim, within = row % head_dim, half = n_rot / 2;
  if (within >= n_rot) return row;
  return head * head_dim + (within % 2) * half + within / 2;
}

// The pairwise row that holds Hugging Face row `row` (the inverse of hf_row_of_pairwise).
inline int64_t pairwise_row_of_hf(int64_t row, int64_t head_dim, int64_t n_rot) {
  const int64_t head = row / head_dim, within = row % head_dim, half = n_rot / 2;
  if (within >= n_rot) return row;
  return head * head_dim + 2 * (within % half) + within / half;
}

}  // namespace frugal
