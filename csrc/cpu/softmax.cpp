// softmax kernels: placeholder until implemented.
#include "cpu/kernels.h"

namespace kiln::cpu {
void softmax(const Arr& x, Arr out, int dim) {
  throw std::runtime_error("softmax: not yet implemented on cpu");
}
void softmax_backward(const Arr& grad, const Arr& y, Arr grad_input, int dim) {
  throw std::runtime_error("softmax_backward: not yet implemented on cpu");
}
void log_softmax(const Arr& x, Arr out, int dim) {
  throw std::runtime_error("log_softmax: not yet implemented on cpu");
}
void log_softmax_backward(const Arr& grad, const Arr& y, Arr grad_input, int dim) {
  throw std::runtime_error("log_softmax_backward: not yet implemented on cpu");
}
}  // namespace kiln::cpu
