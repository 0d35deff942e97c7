#include "kernels/kernels.h"

namespace frugal::kernels {

void fill_avx2(KernelTable& table) {}

}  // namespace frugal::kernels
