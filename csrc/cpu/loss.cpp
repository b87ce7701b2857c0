// loss kernels: placeholder until implemented.
#include "cpu/kernels.h"

namespace kiln::cpu {
void cross_entropy(const Arr& logits, const Arr& target, const OptArr& weight, Arr loss, Arr lse, int64_t ignore_index, double label_smoothing, const std::string& reduction) {
  throw std::runtime_error("cross_entropy: not yet implemented on cpu");
}
void cross_entropy_backward(const Arr& grad_loss, const Arr& logits, const Arr& target, const OptArr& weight, const Arr& lse, Arr grad_logits, int64_t ignore_index, double label_smoothing, const std::string& reduction) {
  throw std::runtime_error("cross_entropy_backward: not yet implemented on cpu");
}
}  // namespace kiln::cpu
