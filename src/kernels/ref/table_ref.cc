#include "kernels/ref/ref_kernels.h"

namespace frugal::kernels::ref {

void fill_table(KernelTable& t) {
  t.isa = Isa::kScalar;
  t.gemm[static_cast<size_t>(DType::kF32)] = {DType::kF32, gemm_f32, 1};
  t.w8a8_int8_row = {DType::kInt8RowAct, gemm_int8_row_w8a8, 1};
  for (size_t i = 0; i < kDTypeSlots; ++i) {
    const auto type = static_cast<DType>(i);
    if (!dtype_registered(type)) continue;
    t.convert[i] = dtype_traits(type).from_float;
    t.to_float[i] = dtype_traits(type).to_float;
  }
  t.rms_norm = rms_norm;
  t.silu_mul = silu_mul;
  t.add = add;
  t.rope = rope;
  t.attention = attention;
  t.softmax = softmax;
  t.argmax = argmax;
  t.gemm_nn_f32 = gemm_nn_f32;
  t.gemm_tn_f32 = gemm_tn_f32;
  t.silu_mul_backward = silu_mul_backward;
  t.read_stream = read_stream;
  t.fma_loop = fma_loop;
}

}  // namespace frugal::kernels::ref
