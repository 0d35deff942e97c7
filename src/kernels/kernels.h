// The compute kernels, one table per instruction set. This header is the only thing the ops
// layer sees: it never includes intrinsics and never asks which ISA it runs on.
//
// Every entry of a table is single-threaded; the ops layer splits work across the thread pool.
// The scalar table is the reference (the spec, and the fallback); the AVX2 and AVX-512 tables
// start as copies of it and replace the entries they implement (dispatch.cc).
//
// Batch invariance: a matrix-product kernel computes each output element with the same
// sequence of operations whatever the number of rows M and whichever other rows are in the
// batch, so a request gives identical logits alone or batched with others.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/dtype.h"

namespace frugal::kernels {

enum class Isa : uint8_t { kScalar = 0, kAvx2 = 1, kAvx512 = 2 };
const char* isa_name(Isa isa);

constexpr size_t kDTypeSlots = static_cast<size_t>(DType::kCount);

// Y[m, n] = sum_k X[m, k] * W[n, k]  for m in [0, m), n in [n0, n1).
struct GemmArgs {
  const void* x = nullptr;  // activations, already converted to the kernel's activation type
  size_t x_stride = 0;      // bytes between rows of x
  const void* w = nullptr;  // weight rows in their storage type, [N, k]
  size_t w_stride = 0;      // bytes between rows of w
  float* y = nullptr;
  size_t y_stride = 0;      // floats between rows of y
  int64_t m = 0;
  int64_t k = 0;
};
using GemmFn = void (*)(const GemmArgs& args, int64_t n0, int64_t n1);

struct GemmKernel {
  DType act = DType::kF32;  // the form the f32 activations are converted to before the call
  GemmFn fn = nullptr;
  int64_t n_block = 1;      // preferred granularity of [n0, n1) splits
};

// Converts n f32 values into `type` (rows of activations for a GemmKernel).
using ConvertFn = void (*)(const float* src, void* dst, int64_t n);

// Attention of a group of query vectors against a sequence's cached keys and values for one
// key/value head. Keys and values live in blocks of `block_size` positions; per block, this
// head's keys are [head_dim, block_size] (transposed) and its values [block_size, head_dim],
// in `kv_type` (f32 or f16). With a q8_0 cache both are q8_0 rows, one per position
// ([block_size, head_dim / 32] blocks of BlockQ8_0; head_dim a multiple of 32).
//
// Numerics, per query: s_j = (q . k_j) * scale over positions 0..limit, p = softmax(s) in f32,
// out = sum_j p_j v_j with f32 accumulation. With an f16 cache the operands of both products
// are f16 (q and p are rounded to f16, as k and v already are), which is what llama.cpp does
// with its default f16 cache; with an f32 cache everything stays f32. With a q8_0 cache (as
// llama.cpp's quantized K): q is quantized to q8_0 and q . k_j is a sum over blocks of exact
// integer dot products times both scales; p stays f32 and the values are dequantized to f32.
struct AttentionArgs {
  const float* q = nullptr;      // [n_q, head_dim], rows q_stride floats apart
  int64_t q_stride = 0;
  const int32_t* q_limit = nullptr;  // [n_q]: query i attends to positions 0..q_limit[i]
  int64_t n_q = 0;
  const void* const* k_blocks = nullptr;  // per block: this head's keys [head_dim, block_size]
  // per block: this head's values [block_size, head_dim]
  const void* const* v_blocks = nullptr;
  int64_t block_size = 0;
  int64_t head_dim = 0;
  DType kv_type = DType::kF32;
  float scale = 1.0f;
  float* out = nullptr;          // [n_q, head_dim], rows out_stride floats apart
  int64_t out_stride = 0;
  float* scratch = nullptr;      // at least attention_scratch_floats(...) floats
  // [n_q] or null: each query's log-sum-exp of its scaled scores (max + log of the softmax's
  // denominator), which lets the caller merge the outputs of partitions of the positions
  // (ops/attention_rows.cc).
  float* lse = nullptr;
};
using AttentionFn = void (*)(const AttentionArgs& args);
// Scratch for one call: scores of every position for every query, plus per-query vectors.
int64_t attention_scratch_floats(int64_t n_q, int64_t n_positions, int64_t head_dim);

// ---- the two other products of training (backward passes). The forward product above is
// X·Wᵀ over weight rows in place; gradients also need X·W and Xᵀ·Y. Both are f32 with f32
// accumulation and compute the whole block they are given: callers split the work by moving
// the pointers (rows of Y, column ranges), so each output element is one chain of fused
// multiply-adds in reduction order whatever the split: results are deterministic and do not
// depend on the thread count (exact resume of a training run relies on it).
//
// Y[m, n] (+)= sum_k X[m, k] * W[k, n]: a linear layer's input gradient dX = dY·W (W its
// [n_out, n_in] weight, so k = n_out), attention's P·V and dS·K.
struct GemmNNArgs {
  const float* x = nullptr;  // [m, k], rows x_stride floats apart
  int64_t x_stride = 0;
  const float* w = nullptr;  // [k, n], rows w_stride floats apart
  int64_t w_stride = 0;
  float* y = nullptr;        // [m, n], rows y_stride floats apart
  int64_t y_stride = 0;
  int64_t m = 0, n = 0, k = 0;
  bool accumulate = false;   // add to y instead of overwriting it
};
using GemmNNFn = void (*)(const GemmNNArgs& args);

// Y[i, j] (+)= sum_r A[r, i] * B[r, j] for i < m, j < n, r < k: weight gradients dW = dYᵀ·X
// (a reduction over the rows of a batch), attention's Pᵀ·dO and dSᵀ·Q.
struct GemmTNArgs {
  const float* a = nullptr;  // [k, m], rows a_stride floats apart
  int64_t a_stride = 0;
  const float* b = nullptr;  // [k, n], rows b_stride floats apart
  int64_t b_stride = 0;
  float* y = nullptr;        // [m, n], rows y_stride floats apart
  int64_t y_stride = 0;
  int64_t m = 0, n = 0, k = 0;
  bool accumulate = false;
};
using GemmTNFn = void (*)(const GemmTNArgs& args);

struct KernelTable {
  Isa isa = Isa::kScalar;
  GemmKernel gemm[kDTypeSlots] = {};   // indexed by weight type; empty slots use the fallback
  // W8A8 (`--w8a8`): int8_row weights against int8_row_act activations (int8 per token). Each
  // output is one exact integer dot product over the whole row, then
  // y = float(dot) * (s_w * s_x), so every ISA gives the same bits and batching cannot change
  // them.
  GemmKernel w8a8_int8_row = {};
  // Products over weights interleaved `lanes` rows at a time (kernels/interleave.h), for the
  // types this ISA has them for (lanes 0: none). The loader interleaves such weights once
  // (Linear::packed) and linear() then calls `kernel` with GemmArgs::w at the interleaved
  // tensor (w_stride still the plain row's bytes; column splits are whole groups).
  struct Packed {
    int lanes = 0;
    GemmKernel kernel;
  } packed[kDTypeSlots] = {};
  ConvertFn convert[kDTypeSlots] = {};  // f32 -> type, for activations and the KV cache
  ToFloatFn to_float[kDTypeSlots] = {};  // type -> f32 (dequantize), fast versions

  // y = x / rms(x) * w  (n elements)
  void (*rms_norm)(const float* x, const float* w, float* y, int64_t n, float eps) = nullptr;
  // out = silu(gate) * up  (n elements)
  void (*silu_mul)(const float* gate, const float* up, float* out, int64_t n) = nullptr;
  // y += x (n elements)
  void (*add)(float* y, const float* x, int64_t n) = nullptr;
  // Rotates n_head heads of one row in place: x [n_head, head_dim]; cos/sin [n_rot/2].
  void (*rope)(float* x, int64_t n_head, int64_t head_dim, int64_t n_rot, const float* cos, const float* sin,
               bool interleaved) = nullptr;
  AttentionFn attention = nullptr;
  // In-place softmax of n values; returns nothing. Used by samplers and tests.
  void (*softmax)(float* x, int64_t n) = nullptr;
  // The first index of the largest of n values (n >= 1); NaNs never win (all NaN: 0). Greedy
  // decoding runs it over the whole vocabulary every token.
  int64_t (*argmax)(const float* x, int64_t n) = nullptr;
  // Training: the products above, and the gradient of silu_mul given the upstream gradient
  // d_out: d_gate = d_out * up * silu'(gate), d_up = d_out * silu(gate) (n elements; d_gate
  // and d_up may alias gate and up).
  GemmNNFn gemm_nn_f32 = nullptr;
  GemmTNFn gemm_tn_f32 = nullptr;
  void (*silu_mul_backward)(const float* gate, const float* up, const float* d_out, float* d_gate, float* d_up,
                            int64_t n) = nullptr;

  // Machine probes for `frugal bench`: what this ISA can do at best on one thread.
  // Reads n floats (n % 64 == 0) as fast as possible; returns their sum so the read happens.
  float (*read_stream)(const float* p, int64_t n) = nullptr;
  // Runs `iterations` rounds of independent fp32 FMAs; returns FLOPs done.
  double (*fma_loop)(int64_t iterations) = nullptr;
  // The same with the widest bf16 dot-product instruction (0 when the ISA has none).
  double (*bf16_dot_loop)(int64_t iterations) = nullptr;
  // The same with the int8 products of the integer kernels (activations quantized to int8):
  // VNNI's vpdpbusd, or AVX2's vpmaddubsw + vpaddw (the least any AVX2 layout spends on 32
  // products; kernels that also widen with vpmaddwd stay under it). FLOPs count 2 per product.
  double (*int8_dot_loop)(int64_t iterations) = nullptr;
};

// The best table this CPU supports (FRUGAL_ISA=scalar|avx2|avx512 narrows it, for tests and
// comparisons).
const KernelTable& active();
const KernelTable& for_isa(Isa isa);
// ISAs compiled into this binary and supported by this CPU, scalar first.
std::vector<Isa> available_isas();

// The GEMM to use for a weight type: the table's own kernel, or the dequantize fallback. With
// w8a8, int8_row weights take the W8A8 kernel (other types are unaffected).
GemmKernel gemm_for(const KernelTable& table, DType weight_type, bool w8a8 = false);

}  // namespace frugal::kernels
