// The one place that turns the CPU's capabilities into a kernel table.
#include <cpuid.h>

#include <array>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "core/check.h"
#include "kernels/kernels.h"
#include "kernels/ref/ref_kernels.h"

namespace frugal::kernels {

// Defined in cpu/avx2/ and cpu/avx512/ (compiled with those ISAs enabled). Each replaces the
// entries it implements and leaves the rest as they are.
void fill_avx2(KernelTable& table);
void fill_avx512(KernelTable& table);

namespace {

bool os_saves_avx512_state() {
  unsigned eax, edx;
  __asm__("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (eax & 0xe6) == 0xe6;  // XMM, YMM, opmask, ZMM_Hi256, Hi16_ZMM
}
bool os_saves_avx_state() {
  unsigned eax, edx;
  __asm__("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (eax & 0x6) == 0x6;
}

bool cpu_has(Isa isa) {
  unsigned a, b, c, d;
  if (isa == Isa::kScalar) return true;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
  const bool osxsave = c & bit_OSXSAVE, fma = c & bit_FMA, f16c = c & bit_F16C;
  if (!osxsave || !fma || !f16c || !os_saves_avx_state()) return false;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
  const bool avx2 = b & bit_AVX2, bmi2 = b & bit_BMI2;
  if (isa == Isa::kAvx2) return avx2 && bmi2;
  const bool f = b & bit_AVX512F, bw = b & bit_AVX512BW, vl = b & bit_AVX512VL, dq = b & bit_AVX512DQ;
  const bool vnni = c & bit_AVX512VNNI, vbmi = c & bit_AVX512VBMI;  // VBMI: vpermb's table lookups
  unsigned a1, b1, c1, d1;
  const bool bf16 = __get_cpuid_count(7, 1, &a1, &b1, &c1, &d1) && (a1 & (1u << 5));
  return avx2 && bmi2 && f && bw && vl && dq && vnni && vbmi && bf16 && os_saves_avx512_state();
}

struct Tables {
  std::array<KernelTable, 3> by_isa;
  Isa best = Isa::kScalar;
};

const Tables& tables() {
  static const Tables t = [] {
    Tables t;
    ref::fill_table(t.by_isa[0]);
    // The fill functions are compiled for their ISA, and GCC uses its instructions anywhere in
    // them (filling the table with AVX-512 stores, say): each runs only on a CPU that has it.
    // An unsupported ISA's table stays a copy of the one below; for_isa() refuses it.
    t.by_isa[1] = t.by_isa[0];
    if (cpu_has(Isa::kAvx2)) fill_avx2(t.by_isa[1]);
    t.by_isa[1].isa = Isa::kAvx2;
    t.by_isa[2] = t.by_isa[1];
    if (cpu_has(Isa::kAvx512)) fill_avx512(t.by_isa[2]);
    t.by_isa[2].isa = Isa::kAvx512;
    for (Isa isa : {Isa::kAvx2, Isa::kAvx512})
      if (cpu_has(isa)) t.best = isa;
    if (const char* env = std::getenv("FRUGAL_ISA"); env != nullptr && *env != '\0') {
      const std::string want = env;
      Isa requested = Isa::kScalar;
      if (want == "avx2") requested = Isa::kAvx2;
      else if (want == "avx512") requested = Isa::kAvx512;
      // A user's setting: an error that names it, not an internal check.
      else if (want != "scalar") fail("FRUGAL_ISA must be scalar, avx2 or avx512, not '{}'", want);
      if (!cpu_has(requested)) fail("FRUGAL_ISA={} is not supported by this CPU", want);
      t.best = requested;
    }
    return t;
  }();
  return t;
}

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kScalar: return "scalar";
    case Isa::kAvx2: return "avx2";
    case Isa::kAvx512: return "avx512";
  }
  return "?";
}

const KernelTable& active() { return tables().by_isa[static_cast<size_t>(tables().best)]; }

const KernelTable& for_isa(Isa isa) {
  FRUGAL_CHECK(cpu_has(isa), "{} kernels requested on a CPU without {}", isa_name(isa), isa_name(isa));
  return tables().by_isa[static_cast<size_t>(isa)];
}

std::vector<Isa> available_isas() {
  std::vector<Isa> out;
  for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512})
    if (cpu_has(isa)) out.push_back(isa);
  return out;
}

int64_t attention_scratch_floats(int64_t n_q, int64_t n_positions, int64_t head_dim) {
  return n_q * (n_positions + 2 * head_dim) + 64;
}

namespace {
// The fallback for a weight type without its own kernel: a few weight rows at a time are
// dequantized to f32 (exactly, with the type's to_float) and multiplied by the table's own f32
// kernel, so a new format runs at SIMD speed everywhere the day it is registered, with the f32
// kernel's batch invariance. GemmFn has no slot for the table or the type, so one trampoline
// per (ISA, type) pair is instantiated.
constexpr int64_t kFallbackRows = 16;

template <size_t IsaIndex, size_t TypeIndex>
void gemm_fallback(const GemmArgs& args, int64_t n0, int64_t n1) {
  const KernelTable& table = tables().by_isa[IsaIndex];
  const ToFloatFn to_float = table.to_float[TypeIndex];
  thread_local std::vector<float> rows;
  rows.resize(kFallbackRows * args.k);
  GemmArgs tile = args;
  tile.w = rows.data();
  tile.w_stride = args.k * sizeof(float);
  for (int64_t n = n0; n < n1; n += kFallbackRows) {
    const int64_t count = std::min(kFallbackRows, n1 - n);
    for (int64_t r = 0; r < count; ++r)
      to_float(static_cast<const uint8_t*>(args.w) + (n + r) * args.w_stride, rows.data() + r * args.k, args.k);
    tile.y = args.y + n;  // the f32 kernel writes columns [0, count) of this shifted view
    table.gemm[static_cast<size_t>(DType::kF32)].fn(tile, 0, count);
  }
}

template <size_t IsaIndex, size_t... TypeIndex>
constexpr std::array<GemmFn, kDTypeSlots> fallbacks_for(std::index_sequence<TypeIndex...>) {
  return {gemm_fallback<IsaIndex, TypeIndex>...};
}
const std::array<std::array<GemmFn, kDTypeSlots>, 3> kFallbacks = {
    fallbacks_for<0>(std::make_index_sequence<kDTypeSlots>()),
    fallbacks_for<1>(std::make_index_sequence<kDTypeSlots>()),
    fallbacks_for<2>(std::make_index_sequence<kDTypeSlots>()),
};
}  // namespace

GemmKernel gemm_for(const KernelTable& table, DType weight_type, bool w8a8) {
  if (w8a8 && weight_type == DType::kInt8Row) return table.w8a8_int8_row;
  const auto i = static_cast<size_t>(weight_type);
  if (table.gemm[i].fn != nullptr) return table.gemm[i];
  FRUGAL_CHECK(table.to_float[i] != nullptr, "type {} has no dequantize", dtype_name(weight_type));
  return {DType::kF32, kFallbacks[static_cast<size_t>(table.isa)][i], kFallbackRows};
}

}  // namespace frugal::kernels
