#include "kernels/kernels.h"

namespace frugal::kernels {
namespace avx2 {
void gemm_f32(const GemmArgs& a, int64_t n0, int64_t n1);
void gemm_f16(const GemmArgs& a, int64_t n0, int64_t n1);
void gemm_bf16(const GemmArgs& a, int64_t n0, int64_t n1);
void gemm_q8_0(const GemmArgs& a, int64_t n0, int64_t n1);
void gemm_q4_0(const GemmArgs& a, int64_t n0, int64_t n1);
void gemm_q4_1(const GemmArgs& a, int64_t n0, int64_t n1);
void gemm_q5_0(const GemmArgs& a, int64_t n0, int64_t n1);
void gemm_q5_1(const GemmArgs& a, int64_t n0, int64_t n1);
void gemm_iq4_nl(const GemmArgs& a, int64_t n0, int64_t n1);
void gemm_nf4(const GemmArgs& a, int64_t n0, int64_t n1);
void gemm_int4_g32(const GemmArgs& a, int64_t n0, int64_t n1);
void gemm_int4_g64(const GemmArgs& a, int64_t n0, int64_t n1);
void gemm_int4_g128(const GemmArgs& a, int64_t n0, int64_t n1);
void gemm_int3_g64(const GemmArgs& a, int64_t n0, int64_t n1);
void gemm_int2_g32(const GemmArgs& a, int64_t n0, int64_t n1);
void gemm_int8_row(const GemmArgs& a, int64_t n0, int64_t n1);
void gemm_int8_row_w8a8(const GemmArgs& a, int64_t n0, int64_t n1);
void gemm_q4_k(const GemmArgs& a, int64_t n0, int64_t n1);
void gemm_q5_k(const GemmArgs& a, int64_t n0, int64_t n1);
void gemm_q6_k(const GemmArgs& a, int64_t n0, int64_t n1);
void gemm_q3_k(const GemmArgs& a, int64_t n0, int64_t n1);
void gemm_q2_k(const GemmArgs& a, int64_t n0, int64_t n1);
void gemm_cb4(const GemmArgs& a, int64_t n0, int64_t n1);
void rms_norm(const float* x, const float* w, float* y, int64_t n, float eps);
void silu_mul(const float* gate, const float* up, float* out, int64_t n);
void add(float* y, const float* x, int64_t n);
void rope(float* x, int64_t n_head, int64_t head_dim, int64_t n_rot, const float* cos, const float* sin,
          bool interleaved);
void softmax(float* x, int64_t n);
int64_t argmax(const float* x, int64_t n);
void convert_f16(const float* src, void* dst, int64_t n);
void convert_bf16(const float* src, void* dst, int64_t n);
void convert_q8_act(const float* src, void* dst, int64_t n);
void convert_int8_row_act(const float* src, void* dst, int64_t n);
void f16_to_float(const void* src, float* dst, int64_t n);
void bf16_to_float(const void* src, float* dst, int64_t n);
void attention(const AttentionArgs& a);
float read_stream(const float* p, int64_t n);
double fma_loop(int64_t iterations);
double int8_dot_loop(int64_t iterations);
void gemm_nn_f32(const GemmNNArgs& a);
void gemm_tn_f32(const GemmTNArgs& a);
void silu_mul_backward(const float* gate, const float* up, const float* d_out, float* d_gate, float* d_up, int64_t n);
void fill_packed(KernelTable& t);  // gemm_packed_avx2.cc
}  // namespace avx2

// Every entry the AVX-512 table fills is filled here too, except bf16_dot_loop: AVX2 has no
// bf16 dot instruction, so that probe stays null and bf16 weights take f32 activations. Weight
// types without an entry here use the dequantize fallback of dispatch.cc, as they do on
// AVX-512. The split granularity is 24 columns: whole
// register tiles of the float kernels (4 or 8 columns) and of the quantized ones (3 or 4).
void fill_avx2(KernelTable& t) {
  auto slot = [](DType type) { return static_cast<size_t>(type); };
  t.gemm[slot(DType::kF32)] = {DType::kF32, avx2::gemm_f32, 24};
  t.gemm[slot(DType::kF16)] = {DType::kF32, avx2::gemm_f16, 24};
  t.gemm[slot(DType::kBF16)] = {DType::kF32, avx2::gemm_bf16, 24};
  t.gemm[slot(DType::kQ8_0)] = {DType::kQ8Act, avx2::gemm_q8_0, 24};
  t.gemm[slot(DType::kQ4_0)] = {DType::kQ8Act, avx2::gemm_q4_0, 24};
  t.gemm[slot(DType::kQ4_1)] = {DType::kQ8Act, avx2::gemm_q4_1, 24};
  t.gemm[slot(DType::kQ5_0)] = {DType::kQ8Act, avx2::gemm_q5_0, 24};
  t.gemm[slot(DType::kQ5_1)] = {DType::kQ8Act, avx2::gemm_q5_1, 24};
  t.gemm[slot(DType::kIQ4_NL)] = {DType::kQ8Act, avx2::gemm_iq4_nl, 24};
  t.gemm[slot(DType::kNF4)] = {DType::kQ8Act, avx2::gemm_nf4, 24};
  t.gemm[slot(DType::kInt4G32)] = {DType::kQ8Act, avx2::gemm_int4_g32, 24};
  t.gemm[slot(DType::kInt4G64)] = {DType::kQ8Act, avx2::gemm_int4_g64, 24};
  t.gemm[slot(DType::kInt4G128)] = {DType::kQ8Act, avx2::gemm_int4_g128, 24};
  t.gemm[slot(DType::kInt3G64)] = {DType::kQ8Act, avx2::gemm_int3_g64, 24};
  t.gemm[slot(DType::kInt2G32)] = {DType::kQ8Act, avx2::gemm_int2_g32, 24};
  t.gemm[slot(DType::kInt8Row)] = {DType::kQ8Act, avx2::gemm_int8_row, 24};
  t.w8a8_int8_row = {DType::kInt8RowAct, avx2::gemm_int8_row_w8a8, 4};
  t.gemm[slot(DType::kQ4_K)] = {DType::kQ8Act, avx2::gemm_q4_k, 24};
  t.gemm[slot(DType::kQ5_K)] = {DType::kQ8Act, avx2::gemm_q5_k, 24};
  t.gemm[slot(DType::kQ6_K)] = {DType::kQ8Act, avx2::gemm_q6_k, 24};
  t.gemm[slot(DType::kQ3_K)] = {DType::kQ8Act, avx2::gemm_q3_k, 24};
  t.gemm[slot(DType::kQ2_K)] = {DType::kQ8Act, avx2::gemm_q2_k, 24};
  t.gemm[slot(DType::kCB4)] = {DType::kQ8Act, avx2::gemm_cb4, 24};
  avx2::fill_packed(t);
  t.convert[slot(DType::kF16)] = avx2::convert_f16;
  t.convert[slot(DType::kBF16)] = avx2::convert_bf16;
  t.convert[slot(DType::kQ8Act)] = avx2::convert_q8_act;
  t.convert[slot(DType::kInt8RowAct)] = avx2::convert_int8_row_act;
  t.to_float[slot(DType::kF16)] = avx2::f16_to_float;
  t.to_float[slot(DType::kBF16)] = avx2::bf16_to_float;
  t.rms_norm = avx2::rms_norm;
  t.silu_mul = avx2::silu_mul;
  t.add = avx2::add;
  t.rope = avx2::rope;
  t.softmax = avx2::softmax;
  t.argmax = avx2::argmax;
  t.attention = avx2::attention;
  t.read_stream = avx2::read_stream;
  t.fma_loop = avx2::fma_loop;
  t.int8_dot_loop = avx2::int8_dot_loop;
  t.gemm_nn_f32 = avx2::gemm_nn_f32;
  t.gemm_tn_f32 = avx2::gemm_tn_f32;
  t.silu_mul_backward = avx2::silu_mul_backward;
}

}  // namespace frugal::kernels
