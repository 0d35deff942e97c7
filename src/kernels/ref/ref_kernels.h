// The scalar reference kernels: the specification every SIMD kernel is tested against, and
// the fallback on CPUs without the SIMD paths.
#pragma once

#include "kernels/kernels.h"

namespace frugal::kernels::ref {

void gemm_f32(const GemmArgs& args, int64_t n0, int64_t n1);
void gemm_int8_row_w8a8(const GemmArgs& args, int64_t n0, int64_t n1);

void rms_norm(const float* x, const float* w, float* y, int64_t n, float eps);
void silu_mul(const float* gate, const float* up, float* out, int64_t n);
void add(float* y, const float* x, int64_t n);
void rope(float* x, int64_t n_head, int64_t head_dim, int64_t n_rot, const float* cos, const float* sin, bool interleaved);
void softmax(float* x, int64_t n);
int64_t argmax(const float* x, int64_t n);
// softmax, returning the log-sum-exp of the inputs (max + log of the denominator).
float softmax_lse(float* x, int64_t n);
void attention(const AttentionArgs& args);
void gemm_nn_f32(const GemmNNArgs& args);
void gemm_tn_f32(const GemmTNArgs& args);
void silu_mul_backward(const float* gate, const float* up, const float* d_out, float* d_gate, float* d_up, int64_t n);

float read_stream(const float* p, int64_t n);
double fma_loop(int64_t iterations);

void fill_table(KernelTable& table);

}  // namespace frugal::kernels::ref
