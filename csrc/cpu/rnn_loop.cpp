// The time loops of the recurrent layers (RNN tanh/relu, LSTM, GRU), forward and backward, for
// one direction of one layer. Formulas are PyTorch's (gate order LSTM i, f, g, o; GRU r, z, n):
//   rnn:  h' = act(xg + W_hh h + b_hh)
//   lstm: [i f g o] = [sig sig tanh sig](xg + W_hh h + b_hh);  c' = f c + i g;  h' = o tanh(c')
//   gru:  gh = W_hh h + b_hh;  r, z = sig(xg_rz + gh_rz);  n = tanh(xg_n + r gh_n);
//         h' = (1 - z) n + z h
// where xg = W_ih x_t + b_ih was computed for all steps by the caller. Per step: one GEMM
// (h_{t-1} W_hh^T + b_hh for the rows of one thread) and one fused pass per row that applies
// the gate nonlinearities and updates c and h, saving what backward needs.
//
// Variable lengths: sequence b only takes steps t < len[b]; the forward direction runs
// t = 0..T-1, the reverse one t = T-1..0, so it starts at each sequence's own last step with
// h0. Padded steps leave the state alone and write zero outputs.
//
// Backward walks the steps in the opposite order: per step a fused pass turns dh (and dc)
// into the pre-activation gate gradients dxg (= d xg), then one GEMM dh_{t-1} = dg W_hh
// (dg = dxg except GRU's n block, which is scaled by r on the hidden side). d W_hh is one big
// GEMM after the loop: dg^T (G*H, T*B) @ Hprev (T*B, H), Hprev being the h_{t-1} each step
// saw (gathered during the loop from out and h0). Bias gradients are column sums of dxg / dg,
// accumulated per thread while the rows are still in L1.
//
// Threads: the batch rows are independent recurrences, so the rows are split once over the
// OpenMP threads and each thread runs the whole time loop on its rows with single-threaded
// GEMMs -- no synchronisation per step. With fewer than 16 rows one thread runs the loop and
// the per-step GEMMs thread themselves. The row loops carry `omp simd`: the compiler cannot
// prove the gate / state pointers distinct and would otherwise leave them scalar.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>
#include <type_traits>

#include "cpu/allocator.h"
#include "cpu/gemm.h"
#include "cpu/rnn.h"
#include "cpu/vecmath.h"

namespace kiln::cpu::rnn {
namespace {

// Grow-only 64-byte aligned scratch of the calling thread, carved into pieces for all threads.
thread_local GrowBuffer t_scratch;

struct Bump {
  char* base;
  size_t off = 0;
  template <class T>
  T* take(int64_t n) {
    T* p = reinterpret_cast<T*>(base + off);
    off += (size_t(n) * sizeof(T) + 63) / 64 * 64;
    return p;
  }
};

char* scratch(size_t bytes) {
  void* p = t_scratch.get(bytes);
  if (!p) throw std::bad_alloc();
  return static_cast<char*>(p);
}
size_t piece(int64_t n, size_t elem) { return (size_t(n) * elem + 63) / 64 * 64; }

int outer_threads(int64_t B) {
  const int64_t most = omp_get_max_threads();
  return int(std::max<int64_t>(1, std::min<int64_t>(most, B / 8)));
}

template <class T>
void vsigmoid(const T* x, T* y, int64_t n, bool simd) {
  if constexpr (std::is_same_v<T, float>) {
    if (simd) return avx512::sigmoid(x, y, n);
  }
  for (int64_t i = 0; i < n; ++i) y[i] = T(1) / (T(1) + std::exp(-x[i]));
}
template <class T>
void vtanh(const T* x, T* y, int64_t n, bool simd) {
  if constexpr (std::is_same_v<T, float>) {
    if (simd) return avx512::tanh(x, y, n);
  }
  for (int64_t i = 0; i < n; ++i) y[i] = std::tanh(x[i]);
}

// Runs f(b0, b1, k) for the k-th of nt balanced chunks of the B rows, the chunks spread over
// an OpenMP team (which may come out smaller than nt); rethrows bad_alloc after the region.
template <class F>
void split_rows(int64_t B, int nt, F&& f) {
  if (nt == 1) return f(int64_t{0}, B, 0);
  bool failed = false;
#pragma omp parallel num_threads(nt)
  {
    const int tid = omp_get_thread_num(), team = omp_get_num_threads();
    for (int k = tid; k < nt; k += team) {
      const int64_t b0 = B * k / nt, b1 = B * (k + 1) / nt;
      try {
        if (b0 < b1) f(b0, b1, k);
      } catch (...) {
#pragma omp atomic write
        failed = true;
      }
    }
  }
  if (failed) throw std::bad_alloc();
}

// dst (cols x rows) = src (rows x cols) transposed, in 16 x 16 tiles that stay in L1.
template <class T>
void transpose(const T* src, int64_t rows, int64_t cols, T* dst) {
  constexpr int64_t kT = 16;
  for (int64_t r0 = 0; r0 < rows; r0 += kT)
    for (int64_t c0 = 0; c0 < cols; c0 += kT) {
      const int64_t r1 = std::min(rows, r0 + kT), c1 = std::min(cols, c0 + kT);
      for (int64_t c = c0; c < c1; ++c)
        for (int64_t r = r0; r < r1; ++r) dst[c * rows + r] = src[r * cols + c];
    }
}

template <class T>
gemm::Problem<T> problem(const T* a, const T* b, T* c, const T* bias, int64_t M, int64_t N,
                         int64_t K, bool ta, bool tb) {
  return gemm::Problem<T>{a, b, c, bias, 1, M, N, K, 0, 0, 0, ta, tb, gemm::Act::none};
}

template <class T>
struct Loop {
  Mode mode;
  int64_t steps, B, H, G, GH, DH, dir;
  const int64_t* len;
  bool rev, simd;

  int64_t L(int64_t b) const { return len ? len[b] : steps; }
  int64_t step(int64_t s, bool backward) const { return rev != backward ? steps - 1 - s : s; }
  // State the step t of sequence b started from: the previous step in processing order if it
  // was one of b's steps, else the initial state. `seq` is (T, B, stride) with this
  // direction's block at column off.
  const T* prev(const T* seq, int64_t stride, int64_t off, const T* init, int64_t t,
                int64_t b) const {
    const int64_t tp = rev ? t + 1 : t - 1;
    if (tp < 0 || tp >= L(b)) return init + b * H;
    return seq + (tp * B + b) * stride + off;
  }
};

template <class T>
void forward_impl(const Fwd<T>& p) {
  const int64_t H = p.H, G = gates_of(p.mode), GH = G * H, B = p.B;
  const Loop<T> lp{p.mode, p.steps, B, H, G, GH, p.D * H, p.dir, p.len, p.dir == 1,
                   std::is_same_v<T, float> && use_avx512()};
  const int nt = outer_threads(B);
  const int64_t rows = (B + nt - 1) / nt;
  const size_t per = piece(rows * H, sizeof(T)) * 2 + piece(rows * GH, sizeof(T)) +
                     piece(H, sizeof(T));
  char* base = scratch(per * nt + piece(GH * H, sizeof(T)));
  // w_hh (GH x H) transposed once, shared by the threads: the step GEMM then reads a
  // row-major B in place instead of packing w_hh^T at every step (32 x 128 . 128 x 512,
  // an LSTM at batch 32: 50.8 -> 43.0 us a step with the transpose's cost spread over 40).
  T* w_t = reinterpret_cast<T*>(base + per * nt);
  transpose(p.w_hh, GH, H, w_t);
  split_rows(B, nt, [&](int64_t b0, int64_t b1, int tid) {
    Bump bump{base + per * tid};
    const int64_t nb = b1 - b0;
    T* h = bump.take<T>(rows * H);
    T* c = bump.take<T>(rows * H);
    T* gb = bump.take<T>(rows * GH);
    T* tc = bump.take<T>(H);
    std::memcpy(h, p.h0 + b0 * H, sizeof(T) * nb * H);
    if (p.mode == Mode::lstm) std::memcpy(c, p.c0 + b0 * H, sizeof(T) * nb * H);
    for (int64_t s = 0; s < p.steps; ++s) {
      const int64_t t = lp.step(s, false);
      bool any = false;
      for (int64_t b = b0; b < b1; ++b) any |= t < lp.L(b);
      if (any) gemm::run(problem<T>(h, w_t, gb, p.b_hh, nb, GH, H, false, false));
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t idx = t * B + b;
        T* o = p.out + idx * lp.DH + p.dir * H;
        if (t >= lp.L(b)) {
          std::fill(o, o + H, T(0));
          continue;
        }
        const T* x = p.xg + idx * GH;
        T* g = gb + (b - b0) * GH;
        T* a = p.gates ? p.gates + idx * GH : g;
        T* hb = h + (b - b0) * H;
        switch (p.mode) {
          case Mode::lstm: {
            T* cb = c + (b - b0) * H;
            if constexpr (std::is_same_v<T, float>) {
              if (lp.simd) {
                avx512::lstm_cell(g, x, a, cb, hb, o, p.extra ? p.extra + idx * H : nullptr, H);
                break;
              }
            }
            #pragma omp simd
            for (int64_t j = 0; j < GH; ++j) g[j] += x[j];
            vsigmoid(g, a, 2 * H, lp.simd);
            vtanh(g + 2 * H, a + 2 * H, H, lp.simd);
            vsigmoid(g + 3 * H, a + 3 * H, H, lp.simd);
            #pragma omp simd
            for (int64_t j = 0; j < H; ++j) cb[j] = a[H + j] * cb[j] + a[j] * a[2 * H + j];
            if (p.extra) std::memcpy(p.extra + idx * H, cb, sizeof(T) * H);
            vtanh(cb, tc, H, lp.simd);
            #pragma omp simd
            for (int64_t j = 0; j < H; ++j) o[j] = hb[j] = a[3 * H + j] * tc[j];
            break;
          }
          case Mode::gru: {
            if constexpr (std::is_same_v<T, float>) {
              if (lp.simd) {
                avx512::gru_cell(g, x, a, hb, o, p.extra ? p.extra + idx * H : nullptr, H);
                break;
              }
            }
            if (p.extra) std::memcpy(p.extra + idx * H, g + 2 * H, sizeof(T) * H);
            #pragma omp simd
            for (int64_t j = 0; j < 2 * H; ++j) g[j] += x[j];
            vsigmoid(g, a, 2 * H, lp.simd);
            #pragma omp simd
            for (int64_t j = 0; j < H; ++j) g[2 * H + j] = x[2 * H + j] + a[j] * g[2 * H + j];
            vtanh(g + 2 * H, a + 2 * H, H, lp.simd);
            #pragma omp simd
            for (int64_t j = 0; j < H; ++j) {
              const T z = a[H + j], n = a[2 * H + j];
              o[j] = hb[j] = (T(1) - z) * n + z * hb[j];
            }
            break;
          }
          case Mode::rnn_tanh:
            #pragma omp simd
            for (int64_t j = 0; j < H; ++j) g[j] += x[j];
            vtanh(g, a, H, lp.simd);
            #pragma omp simd
            for (int64_t j = 0; j < H; ++j) o[j] = hb[j] = a[j];
            break;
          case Mode::rnn_relu:
            #pragma omp simd
            for (int64_t j = 0; j < H; ++j) {
              const T v = g[j] + x[j];
              o[j] = hb[j] = a[j] = v < T(0) ? T(0) : v;  // NaN passes through, as torch
            }
            break;
        }
      }
    }
    std::memcpy(p.h_n + b0 * H, h, sizeof(T) * nb * H);
    if (p.mode == Mode::lstm) std::memcpy(p.c_n + b0 * H, c, sizeof(T) * nb * H);
  });
}

template <class T>
void backward_impl(const Bwd<T>& p) {
  const int64_t H = p.H, G = gates_of(p.mode), GH = G * H, B = p.B, TB = p.steps * B;
  const Loop<T> lp{p.mode, p.steps, B, H, G, GH, p.D * H, p.dir, p.len, p.dir == 1,
                   std::is_same_v<T, float> && use_avx512()};
  const bool gru = p.mode == Mode::gru, lstm = p.mode == Mode::lstm;
  const int nt = outer_threads(B);
  const int64_t rows = (B + nt - 1) / nt;
  const size_t per = piece(rows * H, sizeof(T)) * 4 + piece(H, sizeof(T)) +
                     piece(GH, sizeof(T)) * 2;
  const size_t shared = piece(TB * H, sizeof(T)) + (gru ? piece(TB * GH, sizeof(T)) : 0);
  char* base = scratch(shared + per * nt);
  Bump sb{base};
  T* hprev = sb.take<T>(TB * H);                      // h_{t-1} of each (t, b)
  T* dg_all = gru ? sb.take<T>(TB * GH) : p.grad_xg;  // hidden-side gate gradients
  T* acc = reinterpret_cast<T*>(base + shared);       // per thread: [ih sums | hh sums]
  const int64_t pad = piece(GH, sizeof(T)) / sizeof(T);
  for (int k = 0; k < nt; ++k) std::fill(acc + (per / sizeof(T)) * k, acc + (per / sizeof(T)) * k + 2 * pad, T(0));
  split_rows(B, nt, [&](int64_t b0, int64_t b1, int tid) {
    Bump bump{base + shared + per * tid};
    T* acc_ih = bump.take<T>(GH);
    T* acc_hh = bump.take<T>(GH);
    T* dh = bump.take<T>(rows * H);
    T* dc = bump.take<T>(rows * H);
    T* dnew = bump.take<T>(rows * H);
    T* ddir = bump.take<T>(rows * H);
    T* tc = bump.take<T>(H);
    const int64_t nb = b1 - b0;
    if (p.grad_h_n) std::memcpy(dh, p.grad_h_n + b0 * H, sizeof(T) * nb * H);
    else std::fill(dh, dh + nb * H, T(0));
    if (lstm && p.grad_c_n) std::memcpy(dc, p.grad_c_n + b0 * H, sizeof(T) * nb * H);
    else std::fill(dc, dc + nb * H, T(0));
    for (int64_t s = 0; s < p.steps; ++s) {
      const int64_t t = lp.step(s, true);
      bool any = false;
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t idx = t * B + b;
        T* dx = p.grad_xg + idx * GH;
        T* dg = dg_all + idx * GH;
        T* hp = hprev + idx * H;
        if (t >= lp.L(b)) {  // padded: no gradient flows into this step
          std::fill(dx, dx + GH, T(0));
          if (gru) std::fill(dg, dg + GH, T(0));
          std::fill(hp, hp + H, T(0));
          continue;
        }
        any = true;
        T* dhb = dh + (b - b0) * H;
        if (p.grad_out) {
          const T* go = p.grad_out + idx * lp.DH + p.dir * H;
          #pragma omp simd
          for (int64_t j = 0; j < H; ++j) dhb[j] += go[j];
        }
        const T* hsrc = lp.prev(p.out, lp.DH, p.dir * H, p.h0, t, b);
        std::memcpy(hp, hsrc, sizeof(T) * H);
        const T* a = p.gates + idx * GH;
        switch (p.mode) {
          case Mode::lstm: {
            const T* cp = lp.prev(p.extra, H, 0, p.c0, t, b);
            T* dcb = dc + (b - b0) * H;
            vtanh(p.extra + idx * H, tc, H, lp.simd);
            #pragma omp simd
            for (int64_t j = 0; j < H; ++j) {
              const T i = a[j], f = a[H + j], g = a[2 * H + j], o = a[3 * H + j], th = tc[j];
              const T dhj = dhb[j], dcj = dcb[j] + dhj * o * (T(1) - th * th);
              dx[j] = dcj * g * i * (T(1) - i);
              dx[H + j] = dcj * cp[j] * f * (T(1) - f);
              dx[2 * H + j] = dcj * i * (T(1) - g * g);
              dx[3 * H + j] = dhj * th * o * (T(1) - o);
              dcb[j] = dcj * f;
            }
            break;
          }
          case Mode::gru: {
            const T* ghn = p.extra + idx * H;
            T* dd = ddir + (b - b0) * H;
            #pragma omp simd
            for (int64_t j = 0; j < H; ++j) {
              const T r = a[j], z = a[H + j], n = a[2 * H + j], dhj = dhb[j];
              const T dpn = dhj * (T(1) - z) * (T(1) - n * n);
              dg[j] = dx[j] = dpn * ghn[j] * r * (T(1) - r);
              dg[H + j] = dx[H + j] = dhj * (hsrc[j] - n) * z * (T(1) - z);
              dx[2 * H + j] = dpn;
              dg[2 * H + j] = dpn * r;
              dd[j] = dhj * z;
            }
            break;
          }
          case Mode::rnn_tanh:
            #pragma omp simd
            for (int64_t j = 0; j < H; ++j) dx[j] = dhb[j] * (T(1) - a[j] * a[j]);
            break;
          case Mode::rnn_relu:
            #pragma omp simd
            for (int64_t j = 0; j < H; ++j) dx[j] = a[j] > T(0) ? dhb[j] : T(0);
            break;
        }
        #pragma omp simd
        for (int64_t j = 0; j < GH; ++j) acc_ih[j] += dx[j];
        if (gru)
          #pragma omp simd
          for (int64_t j = 0; j < GH; ++j) acc_hh[j] += dg[j];
      }
      if (!any) continue;
      gemm::run(problem<T>(dg_all + (t * B + b0) * GH, p.w_hh, dnew, static_cast<const T*>(nullptr),
                           nb, H, GH, false, false));
      for (int64_t b = b0; b < b1; ++b) {
        if (t >= lp.L(b)) continue;  // the carried gradient passes padded steps unchanged
        T* dhb = dh + (b - b0) * H;
        const T* dn = dnew + (b - b0) * H;
        if (gru) {
          const T* dd = ddir + (b - b0) * H;
          #pragma omp simd
          for (int64_t j = 0; j < H; ++j) dhb[j] = dn[j] + dd[j];
        } else {
          std::memcpy(dhb, dn, sizeof(T) * H);
        }
      }
    }
    std::memcpy(p.grad_h0 + b0 * H, dh, sizeof(T) * nb * H);
    if (lstm && p.grad_c0) std::memcpy(p.grad_c0 + b0 * H, dc, sizeof(T) * nb * H);
  });
  // Bias gradients: reduce the per-thread column sums.
  for (T* dst : {p.grad_b_ih, p.grad_b_hh}) {
    if (!dst) continue;
    const int64_t which = (dst == p.grad_b_hh && gru) ? pad : 0;
    std::fill(dst, dst + GH, T(0));
    for (int tid = 0; tid < nt; ++tid) {
      const T* src = acc + (per / sizeof(T)) * tid + which;
      #pragma omp simd
      for (int64_t j = 0; j < GH; ++j) dst[j] += src[j];
    }
  }
  gemm::run(problem<T>(dg_all, hprev, p.grad_w_hh, static_cast<const T*>(nullptr), GH, H, TB,
                       true, false));
}

}  // namespace

void forward(const Fwd<float>& p) { forward_impl(p); }
void forward(const Fwd<double>& p) { forward_impl(p); }
void backward(const Bwd<float>& p) { backward_impl(p); }
void backward(const Bwd<double>& p) { backward_impl(p); }

}  // namespace kiln::cpu::rnn
