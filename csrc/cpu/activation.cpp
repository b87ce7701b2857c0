// activation kernels: placeholder until implemented.
#include "cpu/kernels.h"

namespace kiln::cpu {
void relu(const Arr& x, Arr out) {
  throw std::runtime_error("relu: not yet implemented on cpu");
}
void relu_backward(const Arr& grad, const Arr& x, Arr grad_input) {
  throw std::runtime_error("relu_backward: not yet implemented on cpu");
}
void leaky_relu(const Arr& x, Arr out, double negative_slope) {
  throw std::runtime_error("leaky_relu: not yet implemented on cpu");
}
void leaky_relu_backward(const Arr& grad, const Arr& x, Arr grad_input, double negative_slope) {
  throw std::runtime_error("leaky_relu_backward: not yet implemented on cpu");
}
void sigmoid(const Arr& x, Arr out) {
  throw std::runtime_error("sigmoid: not yet implemented on cpu");
}
void sigmoid_backward(const Arr& grad, const Arr& y, Arr grad_input) {
  throw std::runtime_error("sigmoid_backward: not yet implemented on cpu");
}
void tanh(const Arr& x, Arr out) {
  throw std::runtime_error("tanh: not yet implemented on cpu");
}
void tanh_backward(const Arr& grad, const Arr& y, Arr grad_input) {
  throw std::runtime_error("tanh_backward: not yet implemented on cpu");
}
void gelu(const Arr& x, Arr out, const std::string& approximate) {
  throw std::runtime_error("gelu: not yet implemented on cpu");
}
void gelu_backward(const Arr& grad, const Arr& x, Arr grad_input, const std::string& approximate) {
  throw std::runtime_error("gelu_backward: not yet implemented on cpu");
}
void silu(const Arr& x, Arr out) {
  throw std::runtime_error("silu: not yet implemented on cpu");
}
void silu_backward(const Arr& grad, const Arr& x, Arr grad_input) {
  throw std::runtime_error("silu_backward: not yet implemented on cpu");
}
void softplus(const Arr& x, Arr out, double beta, double threshold) {
  throw std::runtime_error("softplus: not yet implemented on cpu");
}
void softplus_backward(const Arr& grad, const Arr& x, Arr grad_input, double beta, double threshold) {
  throw std::runtime_error("softplus_backward: not yet implemented on cpu");
}
void elu(const Arr& x, Arr out, double alpha) {
  throw std::runtime_error("elu: not yet implemented on cpu");
}
void elu_backward(const Arr& grad, const Arr& x, Arr grad_input, double alpha) {
  throw std::runtime_error("elu_backward: not yet implemented on cpu");
}
}  // namespace kiln::cpu
