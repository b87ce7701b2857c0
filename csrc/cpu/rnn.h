// Internal interface between the recurrent-layer kernel wrappers (rnn.cpp: argument checks,
// dtype dispatch) and the time loops (rnn_loop.cpp). Plain data only.
//
// One call covers one direction of one layer over the whole sequence. The input projection
// xg = x W_ih^T + b_ih for all steps is computed by the caller (one big GEMM); the loop does,
// per step, one GEMM h_{t-1} W_hh^T + b_hh and a fused elementwise cell update.
#pragma once
#include <cstdint>

namespace kiln::cpu::rnn {

// Gate counts G: rnn_tanh / rnn_relu 1, lstm 4 (i, f, g, o), gru 3 (r, z, n).
enum class Mode { rnn_tanh, rnn_relu, lstm, gru };
inline int gates_of(Mode m) { return m == Mode::lstm ? 4 : m == Mode::gru ? 3 : 1; }

// Shapes: xg (T, B, G*H); w_hh (G*H, H); b_hh (G*H,) or null; h0, c0 (B, H); len (B,) or null
// (null = every sequence has T steps); out (T, B, D*H), this direction writes columns
// [dir*H, (dir+1)*H); h_n, c_n (B, H); gates (T, B, G*H) post-activation gate values, extra
// (T, B, H) (lstm: c_t, gru: W_hn h_{t-1} + b_hn), both null when nothing is saved.
template <class T>
struct Fwd {
  Mode mode;
  const T *xg, *w_hh, *b_hh, *h0, *c0;
  const int64_t* len;
  T *out, *h_n, *c_n, *gates, *extra;
  int64_t steps, B, H, D, dir;
};

// Gradients of one direction. grad_out (T, B, D*H), grad_h_n, grad_c_n (B, H) may be null
// (zero). Writes grad_xg (T, B, G*H) = d loss / d xg (zero at padded steps), grad_w_hh,
// grad_b_hh (or null), grad_b_ih (or null; the column sums of grad_xg), grad_h0, grad_c0.
template <class T>
struct Bwd {
  Mode mode;
  const T *grad_out, *grad_h_n, *grad_c_n, *w_hh, *h0, *c0;
  const int64_t* len;
  const T *out, *gates, *extra;
  T *grad_xg, *grad_w_hh, *grad_b_hh, *grad_b_ih, *grad_h0, *grad_c0;
  int64_t steps, B, H, D, dir;
};

// Both run with the GIL released; they throw std::bad_alloc when scratch memory runs out.
void forward(const Fwd<float>& p);
void forward(const Fwd<double>& p);
void backward(const Bwd<float>& p);
void backward(const Bwd<double>& p);

}  // namespace kiln::cpu::rnn

namespace kiln::cpu::avx512 {
// The LSTM / GRU cell updates of one row, fused (rnn_avx512.cpp; AVX-512 machines only).
void lstm_cell(const float* g, const float* x, float* a, float* c, float* h, float* o,
               float* c_save, int64_t H);
void gru_cell(const float* g, const float* x, float* a, float* h, float* o, float* gh_n_save,
              int64_t H);
}  // namespace kiln::cpu::avx512
