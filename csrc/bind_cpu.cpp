// kiln._cpu: the CPU kernel table. Only m.def lines; kernels live in csrc/cpu/.
#include <pybind11/stl.h>

#include "cpu/allocator.h"
#include "cpu/isa.h"
#include "cpu/kernels.h"

namespace py = pybind11;
using namespace pybind11::literals;
namespace k = kiln::cpu;

PYBIND11_MODULE(_cpu, m) {
  m.doc() = "kiln CPU kernels (C++, OpenMP, AVX-512/AVX2 chosen at run time)";
  k::init_numpy();

  // machine / runtime
  m.def("get_isa", &k::get_isa, "The instruction set the kernels use now");
  m.def("set_isa", &k::set_isa, "name"_a, "Lower the instruction set (avx512, avx2, scalar)");
  m.def("supported_isa", [] { return k::isa_name(k::isa_supported()); });
  m.def("set_num_threads", &k::set_num_threads, "n"_a);
  m.def("get_num_threads", &k::get_num_threads);
  m.def("install_numpy_allocator", &k::install_numpy_allocator);
  m.def("allocator_stats", &k::allocator_stats);
  m.def("empty_cache", &k::empty_cache);
  m.def("reset_peak_stats", &k::reset_peak_stats);

  // gemm
  m.def("matmul", &k::matmul, "a"_a, "b"_a, "out"_a, "trans_a"_a = false, "trans_b"_a = false,
        "bias"_a = py::none(), "activation"_a = "none");
  m.def("matmul_naive", &k::matmul_naive, "a"_a, "b"_a, "out"_a);

  // activations
  m.def("relu", &k::relu, "x"_a, "out"_a);
  m.def("relu_backward", &k::relu_backward, "grad"_a, "x"_a, "grad_input"_a);
  m.def("leaky_relu", &k::leaky_relu, "x"_a, "out"_a, "negative_slope"_a);
  m.def("leaky_relu_backward", &k::leaky_relu_backward, "grad"_a, "x"_a, "grad_input"_a,
        "negative_slope"_a);
  m.def("sigmoid", &k::sigmoid, "x"_a, "out"_a);
  m.def("sigmoid_backward", &k::sigmoid_backward, "grad"_a, "y"_a, "grad_input"_a);
  m.def("tanh", &k::tanh, "x"_a, "out"_a);
  m.def("tanh_backward", &k::tanh_backward, "grad"_a, "y"_a, "grad_input"_a);
  m.def("gelu", &k::gelu, "x"_a, "out"_a, "approximate"_a = "none");
  m.def("gelu_backward", &k::gelu_backward, "grad"_a, "x"_a, "grad_input"_a,
        "approximate"_a = "none");
  m.def("silu", &k::silu, "x"_a, "out"_a);
  m.def("silu_backward", &k::silu_backward, "grad"_a, "x"_a, "grad_input"_a);
  m.def("softplus", &k::softplus, "x"_a, "out"_a, "beta"_a, "threshold"_a);
  m.def("softplus_backward", &k::softplus_backward, "grad"_a, "x"_a, "grad_input"_a, "beta"_a,
        "threshold"_a);
  m.def("elu", &k::elu, "x"_a, "out"_a, "alpha"_a);
  m.def("elu_backward", &k::elu_backward, "grad"_a, "x"_a, "grad_input"_a, "alpha"_a);

  // softmax
  m.def("softmax", &k::softmax, "x"_a, "out"_a, "dim"_a);
  m.def("softmax_backward", &k::softmax_backward, "grad"_a, "y"_a, "grad_input"_a, "dim"_a);
  m.def("log_softmax", &k::log_softmax, "x"_a, "out"_a, "dim"_a);
  m.def("log_softmax_backward", &k::log_softmax_backward, "grad"_a, "y"_a, "grad_input"_a,
        "dim"_a);

  // loss
  m.def("cross_entropy", &k::cross_entropy, "logits"_a, "target"_a, "weight"_a, "loss"_a,
        "lse"_a, "ignore_index"_a, "label_smoothing"_a, "reduction"_a);
  m.def("cross_entropy_backward", &k::cross_entropy_backward, "grad_loss"_a, "logits"_a,
        "target"_a, "weight"_a, "lse"_a, "grad_logits"_a, "ignore_index"_a, "label_smoothing"_a,
        "reduction"_a);

  // ---- conv
  m.def("conv2d", &k::conv2d, "x"_a, "weight"_a, "bias"_a, "out"_a, "stride_h"_a, "stride_w"_a,
        "padding_h"_a, "padding_w"_a, "dilation_h"_a, "dilation_w"_a, "groups"_a);
  m.def("conv2d_dgrad", &k::conv2d_dgrad, "grad"_a, "weight"_a, "grad_input"_a, "stride_h"_a,
        "stride_w"_a, "padding_h"_a, "padding_w"_a, "dilation_h"_a, "dilation_w"_a, "groups"_a);
  m.def("conv2d_wgrad", &k::conv2d_wgrad, "grad"_a, "x"_a, "grad_weight"_a, "grad_bias"_a,
        "stride_h"_a, "stride_w"_a, "padding_h"_a, "padding_w"_a, "dilation_h"_a, "dilation_w"_a,
        "groups"_a);
}
