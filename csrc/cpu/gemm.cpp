// gemm kernels: placeholder until implemented.
#include "cpu/kernels.h"

namespace kiln::cpu {
void matmul(const Arr& a, const Arr& b, Arr out, bool trans_a, bool trans_b, const OptArr& bias, const std::string& activation) {
  throw std::runtime_error("matmul: not yet implemented on cpu");
}
void matmul_naive(const Arr& a, const Arr& b, Arr out) {
  throw std::runtime_error("matmul_naive: not yet implemented on cpu");
}
}  // namespace kiln::cpu
