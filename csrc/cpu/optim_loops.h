// The element loops of the optimizer kernels (optim.cpp): one range function per optimizer
// and dtype, applying the update to elements [begin, end) of one tensor. Included by one
// translation unit per instruction set (optim.cpp generic, optim_avx2.cpp, optim_avx512.cpp);
// everything here has internal linkage, so each copy is compiled with its file's ISA flags
// and the compiler vectorises the loops for that ISA.
//
// The arithmetic repeats PyTorch's single-tensor (foreach=False) implementation op by op, in
// the element type T, with Python-float hyperparameters rounded to T where PyTorch's kernels
// do (Scalar.to<T>()), so trajectories agree to rounding:
//   grad.add(param, alpha=a)       -> fma(param, a, grad)     (ATen's vectorised add is fmadd)
//   x.lerp_(y, w)                  -> |w| < .5 ? fma(w, y - x, x) : fma(w - 1, y - x, y)
//   x.addcmul_(a, b, value=c)      -> fma(c * a, b, x)        (as PyTorch's build computes it)
//   x.addcdiv_(a, b, value=c)      -> x + c * a / b           ((c * a) / b, no fma)
//   x.mul_(c)                      -> x * c
// (checked bit for bit against torch 2.13's CPU kernels; float64 trajectories come out
// identical, float32 ones differ only where torch's vectorised sqrt (not correctly rounded)
// does). -ffp-contract is off below so that the compiler fuses nothing beyond these fmas.
// maximize multiplies the gradient by -1 (exact) and decoupled weight decay multiplies by 1
// when off (exact), so neither needs a branch in the loop; the flags that change which
// buffers are touched are template arguments.
// Speed: GCC vectorises every loop (64-byte vectors with the AVX-512 flags). Adam and
// RMSprop do two divides and a square root per element, which bounds them at about two
// cycles per element when the arrays are in cache; from DRAM their 28 B/element of traffic
// is the floor instead (SGD: 20 B/element with momentum).
#pragma once
#include <cmath>
#include <type_traits>

#include "cpu/optim.h"

#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")

namespace kiln::cpu::optim {
namespace {

template <class T> inline T* ptr(void* p) { return static_cast<T*>(p); }
template <class T> inline const T* cptr(const void* p) { return static_cast<const T*>(p); }

// torch.maximum: NaN in either operand gives NaN.
template <class T> inline T max_nan(T a, T b) {
  return (a != a || b != b) ? a + b : (a > b ? a : b);
}

// Calls f(std::bool_constant<b>{}) so that a runtime flag becomes a template argument.
template <class F> inline void with_flag(bool b, F&& f) {
  if (b) f(std::true_type{});
  else f(std::false_type{});
}

// ---- SGD: s0 = momentum_buffer ------------------------------------------------------
//   g = ±grad (+ wd p);  buf = first ? g : buf * m + (1 - dampening) g
//   g = nesterov ? g + m buf : buf;  p = p - lr g
template <class T, bool WD, bool MOM, bool FIRST, bool NEST>
void sgd_loop(const Scalars& s, const Tensor& t, int64_t b, int64_t e) {
  T* __restrict p = ptr<T>(t.p);
  const T* __restrict g = cptr<T>(t.g);
  T* __restrict buf = ptr<T>(t.s0);
  const T sign = s.maximize ? T(-1) : T(1), wd = T(s.weight_decay), mom = T(s.momentum);
  const T keep = T(1 - s.dampening), neg_lr = T(-s.lr);
  for (int64_t i = b; i < e; ++i) {
    T gi = g[i] * sign;
    if constexpr (WD) gi = std::fma(p[i], wd, gi);
    if constexpr (MOM) {
      T bi;
      if constexpr (FIRST) bi = gi;
      else bi = std::fma(gi, keep, buf[i] * mom);
      buf[i] = bi;
      if constexpr (NEST) gi = std::fma(bi, mom, gi);
      else gi = bi;
    }
    p[i] = std::fma(gi, neg_lr, p[i]);
  }
}

template <class T> void sgd_range(const Scalars& s, const Tensor& t, int64_t b, int64_t e) {
  const bool mom = s.momentum != 0;
  with_flag(s.weight_decay != 0, [&](auto wd) {
    with_flag(mom, [&](auto m) {
      with_flag(mom && s.first_step, [&](auto first) {
        with_flag(mom && s.nesterov, [&](auto nest) {
          sgd_loop<T, wd.value, m.value, first.value, nest.value>(s, t, b, e);
        });
      });
    });
  });
}

// ---- Adam / AdamW: s0 = exp_avg, s1 = exp_avg_sq, s2 = max_exp_avg_sq (amsgrad) ---------
//   p = p (1 - lr wd) [decoupled];  g = ±grad (+ wd p) [L2];  m = lerp(m, g, 1 - beta1)
//   v = v beta2 + (1 - beta2) g g;  vmax = max(vmax, v) [amsgrad]
//   p = p - step_size m / (sqrt(v or vmax) / sqrt(bias_correction2) + eps)
template <class T, bool L2, bool AMS>
void adam_loop(const Scalars& s, const Tensor& t, int64_t b, int64_t e) {
  T* __restrict p = ptr<T>(t.p);
  const T* __restrict g = cptr<T>(t.g);
  T* __restrict m = ptr<T>(t.s0);
  T* __restrict v = ptr<T>(t.s1);
  T* __restrict vmax = ptr<T>(t.s2);
  const T sign = s.maximize ? T(-1) : T(1), wd = T(s.weight_decay);
  const T decay = (s.decoupled && s.weight_decay != 0) ? T(1 - s.lr * s.weight_decay) : T(1);
  const T w = T(1 - s.beta1), wm1 = w - T(1);
  const bool small = std::abs(w) < T(0.5);
  const T b2 = T(s.beta2), c2 = T(1 - s.beta2), eps = T(s.eps);
  const T bc2 = T(t.bc2_sqrt), neg_step = T(-t.step_size);
  for (int64_t i = b; i < e; ++i) {
    T pi = p[i] * decay;
    T gi = g[i] * sign;
    if constexpr (L2) gi = std::fma(pi, wd, gi);
    const T mi0 = m[i], d = gi - mi0;
    const T mi = small ? std::fma(w, d, mi0) : std::fma(wm1, d, gi);
    T vi = v[i] * b2;
    vi = std::fma(c2 * gi, gi, vi);
    T vh = vi;
    if constexpr (AMS) {
      vh = max_nan(vmax[i], vi);
      vmax[i] = vh;
    }
    const T denom = std::sqrt(vh) / bc2 + eps;
    p[i] = pi + neg_step * mi / denom;
    m[i] = mi;
    v[i] = vi;
  }
}

template <class T> void adam_range(const Scalars& s, const Tensor& t, int64_t b, int64_t e) {
  with_flag(!s.decoupled && s.weight_decay != 0, [&](auto l2) {
    with_flag(s.amsgrad, [&](auto ams) { adam_loop<T, l2.value, ams.value>(s, t, b, e); });
  });
}

// ---- RMSprop: s0 = square_avg, s1 = grad_avg (centered), s2 = momentum_buffer -----------
//   g = ±grad (+ wd p);  sq = sq alpha + (1 - alpha) g g
//   avg = sqrt(sq - ga ga) with ga = lerp(ga, g, 1 - alpha) [centered], else sqrt(sq);  avg += eps
//   momentum: buf = buf mom + g / avg, p = p - lr buf;  else p = p - lr g / avg
template <class T, bool WD, bool CEN, bool MOM>
void rmsprop_loop(const Scalars& s, const Tensor& t, int64_t b, int64_t e) {
  T* __restrict p = ptr<T>(t.p);
  const T* __restrict g = cptr<T>(t.g);
  T* __restrict sq = ptr<T>(t.s0);
  T* __restrict ga = ptr<T>(t.s1);
  T* __restrict buf = ptr<T>(t.s2);
  const T sign = s.maximize ? T(-1) : T(1), wd = T(s.weight_decay);
  const T a = T(s.alpha), c = T(1 - s.alpha), w = T(1 - s.alpha), wm1 = w - T(1);
  const bool small = std::abs(w) < T(0.5);
  const T eps = T(s.eps), mom = T(s.momentum), neg_lr = T(-s.lr);
  for (int64_t i = b; i < e; ++i) {
    T gi = g[i] * sign;
    if constexpr (WD) gi = std::fma(p[i], wd, gi);
    T si = sq[i] * a;
    si = std::fma(c * gi, gi, si);
    sq[i] = si;
    T avg;
    if constexpr (CEN) {
      const T gai0 = ga[i], d = gi - gai0;
      const T gai = small ? std::fma(w, d, gai0) : std::fma(wm1, d, gi);
      ga[i] = gai;
      avg = std::sqrt(std::fma(-gai, gai, si));  // square_avg.addcmul(ga, ga, value=-1)
    } else {
      avg = std::sqrt(si);
    }
    avg = avg + eps;
    if constexpr (MOM) {
      T bi = buf[i] * mom;
      bi = bi + gi / avg;
      buf[i] = bi;
      p[i] = std::fma(bi, neg_lr, p[i]);
    } else {
      p[i] = p[i] + neg_lr * gi / avg;
    }
  }
}

template <class T> void rmsprop_range(const Scalars& s, const Tensor& t, int64_t b, int64_t e) {
  with_flag(s.weight_decay != 0, [&](auto wd) {
    with_flag(s.centered, [&](auto cen) {
      with_flag(s.momentum > 0, [&](auto mom) {
        rmsprop_loop<T, wd.value, cen.value, mom.value>(s, t, b, e);
      });
    });
  });
}

// ---- Adagrad: s0 = sum --------------------------------------------------------------
//   g = ±grad (+ wd p);  sum = sum + g g;  p = p - clr g / (sqrt(sum) + eps),
//   clr = lr / (1 + (step - 1) lr_decay) per tensor (Tensor::step_size)
template <class T, bool WD>
void adagrad_loop(const Scalars& s, const Tensor& t, int64_t b, int64_t e) {
  T* __restrict p = ptr<T>(t.p);
  const T* __restrict g = cptr<T>(t.g);
  T* __restrict sum = ptr<T>(t.s0);
  const T sign = s.maximize ? T(-1) : T(1), wd = T(s.weight_decay), eps = T(s.eps);
  const T neg_clr = T(-t.step_size);
  for (int64_t i = b; i < e; ++i) {
    T gi = g[i] * sign;
    if constexpr (WD) gi = std::fma(p[i], wd, gi);
    const T si = std::fma(gi, gi, sum[i]);
    sum[i] = si;
    const T sd = std::sqrt(si) + eps;
    p[i] = p[i] + neg_clr * gi / sd;
  }
}

template <class T> void adagrad_range(const Scalars& s, const Tensor& t, int64_t b, int64_t e) {
  with_flag(s.weight_decay != 0, [&](auto wd) { adagrad_loop<T, wd.value>(s, t, b, e); });
}

inline Table make_table() {
  return Table{{sgd_range<float>, sgd_range<double>},
               {adam_range<float>, adam_range<double>},
               {rmsprop_range<float>, rmsprop_range<double>},
               {adagrad_range<float>, adagrad_range<double>}};
}

}  // namespace
}  // namespace kiln::cpu::optim

#pragma GCC pop_options
