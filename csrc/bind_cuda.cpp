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
  m.def("matmul_relu_backward", &k::matmul_relu_backward, "a"_a, "b"_a, "out"_a, "trans_a"_a,
        "trans_b"_a, "x"_a);

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
  // ---- rnn
  m.def("rnn_forward",
        k::not_implemented<Str, Obj, Obj, Obj, Obj, Obj, Obj, Obj, Obj, Obj, Obj, Obj, int64_t>(
            "rnn_forward"),
        "mode"_a, "xg"_a, "w_hh"_a, "b_hh"_a, "h0"_a, "c0"_a, "lengths"_a, "out"_a, "h_n"_a,
        "c_n"_a, "gates"_a, "extra"_a, "direction"_a);
  m.def("rnn_backward",
        k::not_implemented<Str, Obj, Obj, Obj, Obj, Obj, Obj, Obj, Obj, Obj, Obj, Obj, Obj, Obj,
                           Obj, Obj, Obj, int64_t>("rnn_backward"),
        "mode"_a, "grad_out"_a, "grad_h_n"_a, "grad_c_n"_a, "w_hh"_a, "h0"_a, "c0"_a,
        "lengths"_a, "out"_a, "gates"_a, "extra"_a, "grad_xg"_a, "grad_w_hh"_a, "grad_b_ih"_a,
        "grad_b_hh"_a, "grad_h0"_a, "grad_c0"_a, "direction"_a);

  // ---- attention
  m.def("attention_forward",
        k::not_implemented<Obj, Obj, Obj, Obj, Obj, Obj, double, bool, double, uint64_t>(
            "attention_forward"),
        "q"_a, "k"_a, "v"_a, "mask"_a, "out"_a, "lse"_a, "scale"_a, "is_causal"_a,
        "dropout_p"_a, "seed"_a);
  m.def("attention_backward",
        k::not_implemented<Obj, Obj, Obj, Obj, Obj, Obj, Obj, Obj, Obj, Obj, double, bool, double,
                           uint64_t>("attention_backward"),
        "grad_out"_a, "q"_a, "k"_a, "v"_a, "mask"_a, "out"_a, "lse"_a, "grad_q"_a, "grad_k"_a,
        "grad_v"_a, "scale"_a, "is_causal"_a, "dropout_p"_a, "seed"_a);

  // ---- embedding
  m.def("embedding", k::not_implemented<Obj, Obj, Obj>("embedding"), "weight"_a, "indices"_a,
        "out"_a);
  m.def("embedding_backward",
        k::not_implemented<Obj, Obj, Obj, int64_t, bool>("embedding_backward"), "grad_out"_a,
        "indices"_a, "grad_weight"_a, "padding_idx"_a, "scale_grad_by_freq"_a);
  m.def("embedding_renorm",
        k::not_implemented<Obj, Obj, double, double>("embedding_renorm"), "weight"_a,
        "indices"_a, "max_norm"_a, "norm_type"_a);

  // ---- norm / dropout / pool
  m.def("layer_norm", k::not_implemented<Obj, Obj, Obj, Obj, Obj, Obj, double>("layer_norm"),
        "x"_a, "weight"_a, "bias"_a, "out"_a, "mean"_a, "rstd"_a, "eps"_a);
  m.def("layer_norm_backward",
        k::not_implemented<Obj, Obj, Obj, Obj, Obj, Obj, Obj, Obj>("layer_norm_backward"),
        "grad"_a, "x"_a, "mean"_a, "rstd"_a, "weight"_a, "grad_input"_a, "grad_weight"_a,
        "grad_bias"_a);
  m.def("batch_norm",
        k::not_implemented<Obj, Obj, Obj, Obj, Obj, Obj, Obj, Obj, bool, double, double>(
            "batch_norm"),
        "x"_a, "weight"_a, "bias"_a, "running_mean"_a, "running_var"_a, "out"_a, "save_mean"_a,
        "save_invstd"_a, "training"_a, "momentum"_a, "eps"_a);
  m.def("batch_norm_backward",
        k::not_implemented<Obj, Obj, Obj, Obj, Obj, Obj, Obj, Obj, bool>("batch_norm_backward"),
        "grad"_a, "x"_a, "weight"_a, "save_mean"_a, "save_invstd"_a, "grad_input"_a,
        "grad_weight"_a, "grad_bias"_a, "training"_a);
  m.def("group_norm",
        k::not_implemented<Obj, Obj, Obj, Obj, Obj, Obj, int64_t, double>("group_norm"), "x"_a,
        "weight"_a, "bias"_a, "out"_a, "mean"_a, "rstd"_a, "num_groups"_a, "eps"_a);
  m.def("group_norm_backward",
        k::not_implemented<Obj, Obj, Obj, Obj, Obj, Obj, Obj, Obj, int64_t>(
            "group_norm_backward"),
        "grad"_a, "x"_a, "mean"_a, "rstd"_a, "weight"_a, "grad_input"_a, "grad_weight"_a,
        "grad_bias"_a, "num_groups"_a);
  m.def("dropout", k::not_implemented<Obj, Obj, uint64_t, double, int64_t>("dropout"), "x"_a,
        "out"_a, "seed"_a, "p"_a, "inner"_a = 1);
  m.def("dropout_backward",
        k::not_implemented<Obj, Obj, uint64_t, double, int64_t>("dropout_backward"), "grad"_a,
        "grad_input"_a, "seed"_a, "p"_a, "inner"_a = 1);
  m.def("max_pool2d",
        k::not_implemented<Obj, Obj, Obj, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t>(
            "max_pool2d"),
        "x"_a, "out"_a, "indices"_a, "kernel_h"_a, "kernel_w"_a, "stride_h"_a, "stride_w"_a, "pad_h"_a, "pad_w"_a, "dilation_h"_a,
        "dilation_w"_a);
  m.def("max_pool2d_backward", k::not_implemented<Obj, Obj, Obj>("max_pool2d_backward"),
        "grad"_a, "indices"_a, "grad_input"_a);
  m.def("avg_pool2d",
        k::not_implemented<Obj, Obj, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, bool, int64_t>("avg_pool2d"),
        "x"_a, "out"_a, "kernel_h"_a, "kernel_w"_a, "stride_h"_a, "stride_w"_a, "pad_h"_a, "pad_w"_a, "count_include_pad"_a,
        "divisor_override"_a);
  m.def("avg_pool2d_backward",
        k::not_implemented<Obj, Obj, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, bool, int64_t>(
            "avg_pool2d_backward"),
        "grad"_a, "grad_input"_a, "kernel_h"_a, "kernel_w"_a, "stride_h"_a, "stride_w"_a, "pad_h"_a, "pad_w"_a, "count_include_pad"_a,
        "divisor_override"_a);
  m.def("adaptive_avg_pool2d", k::not_implemented<Obj, Obj>("adaptive_avg_pool2d"), "x"_a,
        "out"_a);
  m.def("adaptive_avg_pool2d_backward",
        k::not_implemented<Obj, Obj>("adaptive_avg_pool2d_backward"), "grad"_a, "grad_input"_a);

  // ---- optim
  // list arguments are taken as one object here (a list of CUDA arrays) until written
  using Objs = Obj;
  m.def("sgd_step",
        k::not_implemented<Objs, Objs, Objs, double, double, double, double, bool, bool, bool>(
            "sgd_step"),
        "params"_a, "grads"_a, "momentum_buffers"_a, "lr"_a, "momentum"_a, "dampening"_a,
        "weight_decay"_a, "nesterov"_a, "maximize"_a, "first_step"_a);
  m.def("adam_step",
        k::not_implemented<Objs, Objs, Objs, Objs, Objs, Objs, double, double, double, double,
                           double, bool, bool, bool>("adam_step"),
        "params"_a, "grads"_a, "exp_avgs"_a, "exp_avg_sqs"_a, "max_exp_avg_sqs"_a,
        "state_steps"_a, "lr"_a, "beta1"_a, "beta2"_a, "eps"_a, "weight_decay"_a, "decoupled"_a,
        "amsgrad"_a, "maximize"_a);
  m.def("rmsprop_step",
        k::not_implemented<Objs, Objs, Objs, Objs, Objs, Objs, double, double, double, double,
                           double, bool, bool>("rmsprop_step"),
        "params"_a, "grads"_a, "square_avgs"_a, "grad_avgs"_a, "momentum_buffers"_a,
        "state_steps"_a, "lr"_a, "alpha"_a, "eps"_a, "weight_decay"_a, "momentum"_a,
        "centered"_a, "maximize"_a);
  m.def("adagrad_step",
        k::not_implemented<Objs, Objs, Objs, Objs, double, double, double, double, bool>(
            "adagrad_step"),
        "params"_a, "grads"_a, "state_sums"_a, "state_steps"_a, "lr"_a, "lr_decay"_a,
        "weight_decay"_a, "eps"_a, "maximize"_a);
  m.def("grad_norm", k::not_implemented<Objs, Obj, double>("grad_norm"), "tensors"_a, "out"_a,
        "norm_type"_a);
  m.def("grad_scale", k::not_implemented<Objs, double>("grad_scale"), "tensors"_a, "scale"_a);
  m.def("grad_clamp", k::not_implemented<Objs, double, double>("grad_clamp"), "tensors"_a,
        "min"_a, "max"_a);

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
