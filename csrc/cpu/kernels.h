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
#include <vector>

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
// out = relu_backward(op(a) @ op(b), x): x <= 0 ? 0 : the product (a NaN x passes it), the
// mask applied in the GEMM's write-back. x: out's shape. The backward of Linear + ReLU
// under a Linear (linear_chain): dX of the upper layer masked by the lower layer's output.
void matmul_relu_backward(const Arr& a, const Arr& b, Arr out, bool trans_a, bool trans_b,
                          const Arr& x);
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
// ---- rnn (rnn.cpp, rnn_loop.cpp): one direction of one recurrent layer ------
// mode "rnn_tanh" | "rnn_relu" | "lstm" (gates i, f, g, o) | "gru" (r, z, n); G = 1, 1, 4, 3.
//   xg (T, B, G*H) = x W_ih^T + b_ih for every step (the caller's GEMM); w_hh (G*H, H);
//   b_hh (G*H,) or None; h0, c0 (B, H) (c0: lstm only); lengths int64 (B,) in [0, T] or None:
//   sequence b takes steps t < lengths[b] (direction 1 runs them backwards from its own last
//   step), outputs at padded steps are 0, h_n / c_n are the states after each one's last step;
//   out (T, B, D*H): this direction writes columns [direction*H, (direction+1)*H);
//   gates (T, B, G*H) post-activation gates and extra (T, B, H) (lstm: c_t, gru: W_hn h + b_hn)
//   are saved for rnn_backward, or both None (inference).
void rnn_forward(const std::string& mode, const Arr& xg, const Arr& w_hh, const OptArr& b_hh,
                 const Arr& h0, const OptArr& c0, const OptArr& lengths, Arr out, Arr h_n,
                 const OptArr& c_n, const OptArr& gates, const OptArr& extra, int64_t direction);
// grad_out (T, B, D*H), grad_h_n, grad_c_n (B, H): None = zero. Writes grad_xg (d xg, zero at
// padded steps; also the gradient of b_ih), grad_w_hh, grad_b_ih / grad_b_hh (None = skip),
// grad_h0, grad_c0 (lstm). d x and d W_ih are GEMMs on grad_xg done by the caller.
void rnn_backward(const std::string& mode, const OptArr& grad_out, const OptArr& grad_h_n,
                  const OptArr& grad_c_n, const Arr& w_hh, const Arr& h0, const OptArr& c0,
                  const OptArr& lengths, const Arr& out, const Arr& gates, const OptArr& extra,
                  Arr grad_xg, Arr grad_w_hh, const OptArr& grad_b_ih, const OptArr& grad_b_hh,
                  Arr grad_h0, const OptArr& grad_c0, int64_t direction);
// ---- attention (attention.cpp, attention_tiles.cpp, attention_avx512.cpp) --------------
// Fused scaled-dot-product attention (flash-style, O(T * D) memory).
//   q (B, Hq, L, D), k (B, Hkv, S, D), v (B, Hkv, S, Dv), Hq a multiple of Hkv (GQA);
//   mask: None, bool (True = attend) or additive float of q's dtype, 4-d, each dim 1 or full
//   (broadcast to (B, Hq, L, S)); out (B, Hq, L, Dv); lse (B, Hq, L) per-row log-sum-exp
//   (-inf for a fully masked row, whose output is 0). Dropout: Philox at element index
//   ((b * Hq + h) * L + i) * S + j of `seed`, dropped when its uniform < dropout_p.
void attention_forward(const Arr& q, const Arr& k, const Arr& v, const OptArr& mask, Arr out,
                       Arr lse, double scale, bool is_causal, double dropout_p, uint64_t seed);
void attention_backward(const Arr& grad_out, const Arr& q, const Arr& k, const Arr& v,
                        const OptArr& mask, const Arr& out, const Arr& lse, Arr grad_q,
                        Arr grad_k, Arr grad_v, double scale, bool is_causal, double dropout_p,
                        uint64_t seed);
// ---- embedding (embedding.cpp) ------------------------------------------------------
//   weight (V, E); indices int64, any shape, N elements in [0, V); out / grad_out (N, E).
//   padding_idx: the row that gets no gradient, -1 for none. renorm: in place, see the file.
void embedding(const Arr& weight, const Arr& indices, Arr out);
void embedding_backward(const Arr& grad_out, const Arr& indices, Arr grad_weight,
                        int64_t padding_idx, bool scale_grad_by_freq);
void embedding_renorm(Arr weight, const Arr& indices, double max_norm, double norm_type);
// ---- norm / dropout / pool (norm*.cpp, dropout.cpp, pool*.cpp) ------------
// layer_norm: x viewed as (R, D), R = mean.size; each row normalized over its D elements;
// weight / bias (D,) or None; mean / rstd (R,) receive the row statistics for the backward.
void layer_norm(const Arr& x, const OptArr& weight, const OptArr& bias, Arr out, Arr mean,
                Arr rstd, double eps);
// Each of grad_input / grad_weight / grad_bias may be None (not computed).
void layer_norm_backward(const Arr& grad, const Arr& x, const Arr& mean, const Arr& rstd,
                         const OptArr& weight, const OptArr& grad_input,
                         const OptArr& grad_weight, const OptArr& grad_bias);
// batch_norm: x (N, C, *); weight / bias / running_mean / running_var (C,) or None (running
// stats required when not training, updated in place when training with `momentum` and the
// unbiased variance); save_mean / save_invstd (C,) receive the statistics used (batch or
// running) for the backward, which uses the training formula or gx = g * w * invstd.
void batch_norm(const Arr& x, const OptArr& weight, const OptArr& bias,
                const OptArr& running_mean, const OptArr& running_var, Arr out, Arr save_mean,
                Arr save_invstd, bool training, double momentum, double eps);
void batch_norm_backward(const Arr& grad, const Arr& x, const OptArr& weight,
                         const Arr& save_mean, const Arr& save_invstd, const OptArr& grad_input,
                         const OptArr& grad_weight, const OptArr& grad_bias, bool training);
// group_norm: x (N, C, *), C divisible by num_groups; weight / bias (C,) or None; mean / rstd
// (N, num_groups).
void group_norm(const Arr& x, const OptArr& weight, const OptArr& bias, Arr out, Arr mean,
                Arr rstd, int64_t num_groups, double eps);
void group_norm_backward(const Arr& grad, const Arr& x, const Arr& mean, const Arr& rstd,
                         const OptArr& weight, const OptArr& grad_input,
                         const OptArr& grad_weight, const OptArr& grad_bias, int64_t num_groups);
// out = x * keep / (1 - p), keep from Philox(seed, i / inner) (common/philox.h); inner > 1 is
// feature dropout (one draw per run of inner elements). dropout_backward applies the same mask.
void dropout(const Arr& x, Arr out, uint64_t seed, double p, int64_t inner);
void dropout_backward(const Arr& grad, Arr grad_input, uint64_t seed, double p, int64_t inner);
// Pooling over the last two dims of (..., H, W) into (..., OH, OW) (PyTorch's windows; the
// output size carries ceil_mode). max_pool2d's indices (int64, out's shape, or None) are flat
// h * W + w per plane; the backward scatters grad through them. divisor_override 0 = none.
void max_pool2d(const Arr& x, Arr out, const OptArr& indices, int64_t kernel_h, int64_t kernel_w,
                int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w,
                int64_t dilation_h, int64_t dilation_w);
void max_pool2d_backward(const Arr& grad, const Arr& indices, Arr grad_input);
void avg_pool2d(const Arr& x, Arr out, int64_t kernel_h, int64_t kernel_w, int64_t stride_h,
                int64_t stride_w, int64_t pad_h, int64_t pad_w, bool count_include_pad,
                int64_t divisor_override);
void avg_pool2d_backward(const Arr& grad, Arr grad_input, int64_t kernel_h, int64_t kernel_w,
                         int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w,
                         bool count_include_pad, int64_t divisor_override);
void adaptive_avg_pool2d(const Arr& x, Arr out);
void adaptive_avg_pool2d_backward(const Arr& grad, Arr grad_input);

// ---- optim (optim.cpp, optim_loops.h, optim_avx512.cpp, optim_avx2.cpp) -----
// One call updates every parameter of one parameter group in place with PyTorch's
// single-tensor update. Lists are index-aligned (params[i], grads[i] and the state arrays [i]
// share shape and dtype); state lists that an option turns off are passed empty;
// state_steps[i] are 1-element float32 arrays (PyTorch's `step`) that the kernel increments.
//   sgd_step:     first_step: momentum_buffers are initialised to the gradient (buf = g)
//   adam_step:    decoupled = AdamW's weight decay; max_exp_avg_sqs only with amsgrad
//   rmsprop_step: grad_avgs only when centered, momentum_buffers only when momentum > 0
void sgd_step(const std::vector<Arr>& params, const std::vector<Arr>& grads,
              const std::vector<Arr>& momentum_buffers, double lr, double momentum,
              double dampening, double weight_decay, bool nesterov, bool maximize,
              bool first_step);
void adam_step(const std::vector<Arr>& params, const std::vector<Arr>& grads,
               const std::vector<Arr>& exp_avgs, const std::vector<Arr>& exp_avg_sqs,
               const std::vector<Arr>& max_exp_avg_sqs, const std::vector<Arr>& state_steps,
               double lr, double beta1, double beta2, double eps, double weight_decay,
               bool decoupled, bool amsgrad, bool maximize);
void rmsprop_step(const std::vector<Arr>& params, const std::vector<Arr>& grads,
                  const std::vector<Arr>& square_avgs, const std::vector<Arr>& grad_avgs,
                  const std::vector<Arr>& momentum_buffers, const std::vector<Arr>& state_steps,
                  double lr, double alpha, double eps, double weight_decay, double momentum,
                  bool centered, bool maximize);
void adagrad_step(const std::vector<Arr>& params, const std::vector<Arr>& grads,
                  const std::vector<Arr>& state_sums, const std::vector<Arr>& state_steps,
                  double lr, double lr_decay, double weight_decay, double eps, bool maximize);
// Gradient clipping (optim_clip.cpp): out (1-element float64) = the norm_type-norm of all
// tensors concatenated (float64 accumulation; inf, -inf, 0 supported); x *= scale; clamp.
void grad_norm(const std::vector<Arr>& tensors, Arr out, double norm_type);
void grad_scale(const std::vector<Arr>& tensors, double scale);
void grad_clamp(const std::vector<Arr>& tensors, double min, double max);

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
