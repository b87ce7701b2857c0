// kiln._cuda: the CUDA kernel table. Only m.def lines; kernels live in csrc/cuda/.
// Same kernel names, argument names and defaults as kiln._cpu (bind_cpu.cpp);
// arrays are objects with __cuda_array_interface__. Kernels not written yet
// raise NotImplementedError naming themselves and the backend.
#include <pybind11/stl.h>

#include "cuda/device.h"
#include "cuda/kernels.h"

namespace py = pybind11;
using namespace pybind11::literals;
namespace k = kiln::cuda;
using Obj = k::Obj;
using Str = std::string;

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "kiln CUDA kernels (arrays: objects with __cuda_array_interface__)";

  // machine / runtime
  m.def("device_count", &k::device_count, "Number of usable CUDA GPUs; 0 when no driver or GPU");
  m.def("is_available", &k::is_available, "Whether a CUDA GPU can run kiln._cuda kernels");
  m.def("status", &k::status, "One line: the GPUs and driver, or why there is none");
  m.def("device_info", &k::device_info, "index"_a = 0, "Name, compute capability, memory, SMs");
  m.def("compiled_architectures", &k::compiled_architectures,
        "GPU code in this build: sm_XY = machine code, compute_XY = PTX");
  m.def("runtime_version", &k::runtime_version, "(major, minor) of the linked CUDA runtime");

  // gemm
  m.def("matmul", &k::matmul, "a"_a, "b"_a, "out"_a, "trans_a"_a = false, "trans_b"_a = false,
        "bias"_a = py::none(), "activation"_a = "none");
  m.def("matmul_naive", &k::matmul_naive, "a"_a, "b"_a, "out"_a);

  // activations
  m.def("relu", &k::relu, "x"_a, "out"_a);
  m.def("relu_backward", &k::relu_backward, "grad"_a, "x"_a, "grad_input"_a);
  m.def("leaky_relu", k::not_implemented<Obj, Obj, double>("leaky_relu"), "x"_a, "out"_a,
        "negative_slope"_a);
  m.def("leaky_relu_backward", k::not_implemented<Obj, Obj, Obj, double>("leaky_relu_backward"),
        "grad"_a, "x"_a, "grad_input"_a, "negative_slope"_a);
  m.def("sigmoid", k::not_implemented<Obj, Obj>("sigmoid"), "x"_a, "out"_a);
  m.def("sigmoid_backward", k::not_implemented<Obj, Obj, Obj>("sigmoid_backward"), "grad"_a,
        "y"_a, "grad_input"_a);
  m.def("tanh", k::not_implemented<Obj, Obj>("tanh"), "x"_a, "out"_a);
  m.def("tanh_backward", k::not_implemented<Obj, Obj, Obj>("tanh_backward"), "grad"_a, "y"_a,
        "grad_input"_a);
  m.def("gelu", k::not_implemented<Obj, Obj, Str>("gelu"), "x"_a, "out"_a,
        "approximate"_a = "none");
  m.def("gelu_backward", k::not_implemented<Obj, Obj, Obj, Str>("gelu_backward"), "grad"_a, "x"_a,
        "grad_input"_a, "approximate"_a = "none");
  m.def("silu", k::not_implemented<Obj, Obj>("silu"), "x"_a, "out"_a);
  m.def("silu_backward", k::not_implemented<Obj, Obj, Obj>("silu_backward"), "grad"_a, "x"_a,
        "grad_input"_a);
  m.def("softplus", k::not_implemented<Obj, Obj, double, double>("softplus"), "x"_a, "out"_a,
        "beta"_a, "threshold"_a);
  m.def("softplus_backward",
        k::not_implemented<Obj, Obj, Obj, double, double>("softplus_backward"), "grad"_a, "x"_a,
        "grad_input"_a, "beta"_a, "threshold"_a);
  m.def("elu", k::not_implemented<Obj, Obj, double>("elu"), "x"_a, "out"_a, "alpha"_a);
  m.def("elu_backward", k::not_implemented<Obj, Obj, Obj, double>("elu_backward"), "grad"_a,
        "x"_a, "grad_input"_a, "alpha"_a);

  // softmax
  m.def("softmax", k::not_implemented<Obj, Obj, int>("softmax"), "x"_a, "out"_a, "dim"_a);
  m.def("softmax_backward", k::not_implemented<Obj, Obj, Obj, int>("softmax_backward"), "grad"_a,
        "y"_a, "grad_input"_a, "dim"_a);
  m.def("log_softmax", k::not_implemented<Obj, Obj, int>("log_softmax"), "x"_a, "out"_a, "dim"_a);
  m.def("log_softmax_backward", k::not_implemented<Obj, Obj, Obj, int>("log_softmax_backward"),
        "grad"_a, "y"_a, "grad_input"_a, "dim"_a);

  // loss
  m.def("cross_entropy",
        k::not_implemented<Obj, Obj, Obj, Obj, Obj, int64_t, double, Str>("cross_entropy"),
        "logits"_a, "target"_a, "weight"_a, "loss"_a, "lse"_a, "ignore_index"_a,
        "label_smoothing"_a, "reduction"_a);
  m.def("cross_entropy_backward",
        k::not_implemented<Obj, Obj, Obj, Obj, Obj, Obj, int64_t, double, Str>(
            "cross_entropy_backward"),
        "grad_loss"_a, "logits"_a, "target"_a, "weight"_a, "lse"_a, "grad_logits"_a,
        "ignore_index"_a, "label_smoothing"_a, "reduction"_a);

  // ---- conv
  using I = int64_t;
  m.def("conv2d", k::not_implemented<Obj, Obj, Obj, Obj, I, I, I, I, I, I, I>("conv2d"), "x"_a,
        "weight"_a, "bias"_a, "out"_a, "stride_h"_a, "stride_w"_a, "padding_h"_a, "padding_w"_a,
        "dilation_h"_a, "dilation_w"_a, "groups"_a);
  m.def("conv2d_dgrad", k::not_implemented<Obj, Obj, Obj, I, I, I, I, I, I, I>("conv2d_dgrad"),
        "grad"_a, "weight"_a, "grad_input"_a, "stride_h"_a, "stride_w"_a, "padding_h"_a,
        "padding_w"_a, "dilation_h"_a, "dilation_w"_a, "groups"_a);
  m.def("conv2d_wgrad",
        k::not_implemented<Obj, Obj, Obj, Obj, I, I, I, I, I, I, I>("conv2d_wgrad"), "grad"_a,
        "x"_a, "grad_weight"_a, "grad_bias"_a, "stride_h"_a, "stride_w"_a, "padding_h"_a,
        "padding_w"_a, "dilation_h"_a, "dilation_w"_a, "groups"_a);
}
