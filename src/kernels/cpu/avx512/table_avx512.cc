#include "kernels/kernels.h"

namespace frugal::kernels {

void fill_avx512(KernelTable& table) {}

}  // namespace frugal::kernels
