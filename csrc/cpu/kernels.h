// The CPU kernel table: every function here is bound under the same name in
// kiln._cpu (bind_cpu.cpp), and kiln._cuda / kiln.backends.numba_cuda export
// the same names with the same arguments.
//
// Contract: outputs are allocated by the caller and passed in; inputs and
// outputs are C-contiguous; float kernels take float32 or float64 (all arrays
// of one call share the dtype); shapes/dtypes are checked and reported as
// ValueError/TypeError/IndexError naming the kernel; the GIL is released while
// the kernel runs; threads come from OpenMP (set_num_threads).
#pragma once
#include <optional>
#include <string>

#include "common/array.h"

namespace kiln::cpu {
using Arr = py::array;
using OptArr = std::optional<py::array>;

// ---- threads --------------------------------------------------------------
void set_num_threads(int n);
int get_num_threads();

// ---- gemm (gemm.cpp, gemm_avx512.cpp, gemm_avx2.cpp) -----------------------
// out[b] = act(op(a[b]) @ op(b[b]) + bias), op(x) = x or x^T.
//   a: (Ba, M, K), or (Ba, K, M) when trans_a;  2-D means Ba = 1
//   b: (Bb, K, N), or (Bb, N, K) when trans_b;  2-D means Bb = 1
//   out: (B, M, N) (2-D when B = 1), with Ba, Bb in {1, B} (1 = broadcast)
//   bias: (N,) or None; activation: "none" | "relu" | "gelu" | "gelu_tanh"
void matmul(const Arr& a, const Arr& b, Arr out, bool trans_a, bool trans_b, const OptArr& bias,
            const std::string& activation);
// Reference triple loop (i, j, k order; no blocking, no SIMD, one thread) for
// tests and for the bench's "x times faster than naive" figure. a (M,K), b (K,N).
void matmul_naive(const Arr& a, const Arr& b, Arr out);

// ---- activations (activation.cpp): y = f(x); grad_input = grad * f'(.) -----
void relu(const Arr& x, Arr out);
void relu_backward(const Arr& grad, const Arr& x, Arr grad_input);
void leaky_relu(const Arr& x, Arr out, double negative_slope);
void leaky_relu_backward(const Arr& grad, const Arr& x, Arr grad_input, double negative_slope);
void sigmoid(const Arr& x, Arr out);
void sigmoid_backward(const Arr& grad, const Arr& y, Arr grad_input);  // y = sigmoid(x)
void tanh(const Arr& x, Arr out);
void tanh_backward(const Arr& grad, const Arr& y, Arr grad_input);  // y = tanh(x)
void gelu(const Arr& x, Arr out, const std::string& approximate);  // "none" | "tanh"
void gelu_backward(const Arr& grad, const Arr& x, Arr grad_input, const std::string& approximate);
void silu(const Arr& x, Arr out);
void silu_backward(const Arr& grad, const Arr& x, Arr grad_input);
void softplus(const Arr& x, Arr out, double beta, double threshold);
void softplus_backward(const Arr& grad, const Arr& x, Arr grad_input, double beta,
                       double threshold);
void elu(const Arr& x, Arr out, double alpha);
void elu_backward(const Arr& grad, const Arr& x, Arr grad_input, double alpha);

// ---- softmax (softmax.cpp): over axis `dim` (0 <= dim < x.ndim) -------------
void softmax(const Arr& x, Arr out, int dim);
void softmax_backward(const Arr& grad, const Arr& y, Arr grad_input, int dim);  // y = softmax
void log_softmax(const Arr& x, Arr out, int dim);
void log_softmax_backward(const Arr& grad, const Arr& y, Arr grad_input, int dim);  // y = log_softmax

// ---- loss (loss.cpp): cross-entropy from logits, PyTorch semantics ---------
//   logits (N, C); target int64 (N,) class indices, or (N, C) probabilities of logits' dtype;
//   weight (C,) or None; reduction "none" (loss (N,)) | "mean" | "sum" (loss 0-d);
//   lse (N,) receives each row's log-sum-exp for the backward pass.
void cross_entropy(const Arr& logits, const Arr& target, const OptArr& weight, Arr loss, Arr lse,
                   int64_t ignore_index, double label_smoothing, const std::string& reduction);
void cross_entropy_backward(const Arr& grad_loss, const Arr& logits, const Arr& target,
                            const OptArr& weight, const Arr& lse, Arr grad_logits,
                            int64_t ignore_index, double label_smoothing,
                            const std::string& reduction);

// ---- conv (conv.cpp, conv_gemm.cpp, conv_im2col.cpp, conv_depthwise*.cpp) --
// 2-D convolution, NCHW, PyTorch semantics. x (N, C, H, W); weight (Co, C/groups,
// kH, kW); out / grad (N, Co, Ho, Wo). padding_h / padding_w are the top / left
// padding; the bottom / right padding is implied by Ho / Wo (symmetric as in
// PyTorch, one more for an odd 'same' total, less for conv_transpose2d's
// output_padding). bias / grad_bias: (Co,) or None.
void conv2d(const Arr& x, const Arr& weight, const OptArr& bias, Arr out, int64_t stride_h,
            int64_t stride_w, int64_t padding_h, int64_t padding_w, int64_t dilation_h,
            int64_t dilation_w, int64_t groups);
// grad_input (N, C, H, W) = d/dx of sum(grad * conv2d(x, weight)) (the transposed conv).
void conv2d_dgrad(const Arr& grad, const Arr& weight, Arr grad_input, int64_t stride_h,
                  int64_t stride_w, int64_t padding_h, int64_t padding_w, int64_t dilation_h,
                  int64_t dilation_w, int64_t groups);
// grad_weight (Co, C/groups, kH, kW) and grad_bias = sum of grad over (N, Ho, Wo).
void conv2d_wgrad(const Arr& grad, const Arr& x, Arr grad_weight, const OptArr& grad_bias,
                  int64_t stride_h, int64_t stride_w, int64_t padding_h, int64_t padding_w,
                  int64_t dilation_h, int64_t dilation_w, int64_t groups);
}  // namespace kiln::cpu
