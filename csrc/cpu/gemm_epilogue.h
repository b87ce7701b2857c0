// The GEMM epilogue (what the micro-kernel does when it writes a tile back: bias,
// activations, and the software-prefetch fields it carries) and small index helpers.
// Part of gemm_driver.h; like it, everything is in an anonymous namespace so each
// ISA translation unit compiles its own copy with its own -m flags.
#pragma once
#include <cmath>
#include <cstdint>

#include "cpu/gemm.h"

namespace kiln::cpu::gemm {
namespace {

inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }
inline int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// What the micro-kernel does when it writes its tile back.
template <class T>
struct Epi {
  const T* bias;  // already offset to the tile's first column; nullptr = none
  Act act;
  bool first;  // first kc block: overwrite C instead of accumulating
  bool last;   // last kc block: add bias, apply the activation (and the mask)
  const T* mask = nullptr;  // Problem::mask at the tile's first element (row stride ldc)
  // Or: prefetch one cache line per k step into L2, from pf on: runs of pf_run
  // consecutive lines pf_skip bytes apart (rows of a matrix), pf_left lines left in
  // the first run.
  const char* pf = nullptr;
  int64_t pf_left = 0, pf_run = 0, pf_skip = 0;
};

// Exact GELU, x * Phi(x), Phi via erf (PyTorch approximate="none").
template <class T>
inline T gelu_erf(T x) {
  return T(0.5) * x * (T(1) + std::erf(x * T(0.70710678118654752440)));
}
// PyTorch approximate="tanh": 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
template <class T>
inline T gelu_tanh(T x) {
  const T inner = T(0.79788456080286535588) * (x + T(0.044715) * x * x * x);
  return T(0.5) * x * (T(1) + std::tanh(inner));
}
// The transcendental activations run on a row segment the micro-kernel has
// just stored (still in L1); relu is done in registers.
template <class T>
inline void act_row(T* c, int n, Act act) {
  if (act == Act::gelu) {
    for (int j = 0; j < n; ++j) c[j] = gelu_erf(c[j]);
  } else if (act == Act::gelu_tanh) {
    for (int j = 0; j < n; ++j) c[j] = gelu_tanh(c[j]);
  }
}

// fp32 vector GELUs for traits with vector math (S::kVecMath). libm's erff /
// tanhf cost 5-20 ns an element, more than the GEMM itself for K ~ 1000.
//
// erf: Eigen's rational approximation x P(x^2) / Q(x^2) on [-4, 4] (erf is
// +-1 in float beyond), absolute error < 5e-7, so GELU's error stays below
// ~2 eps |x| -- the size of the rounding error of the pre-activation itself.
template <class S>
typename S::V vgelu_erf(typename S::V x) {
  using V = typename S::V;
  const V t = S::min(S::max(S::mul(x, S::set1(0.70710678118654752f)), S::set1(-4.f)), S::set1(4.f));
  const V t2 = S::mul(t, t);
  V p = S::fma(t2, S::set1(-2.72614225801306e-10f), S::set1(2.77068142495902e-08f));
  p = S::fma(t2, p, S::set1(-2.10102402082508e-06f));
  p = S::fma(t2, p, S::set1(-5.69250639462346e-05f));
  p = S::fma(t2, p, S::set1(-7.34990630326855e-04f));
  p = S::fma(t2, p, S::set1(-2.95459980854025e-03f));
  p = S::fma(t2, p, S::set1(-1.60960333262415e-02f));
  p = S::mul(t, p);
  V q = S::fma(t2, S::set1(-1.45660718464996e-05f), S::set1(-2.13374055278905e-04f));
  q = S::fma(t2, q, S::set1(-1.68282697438203e-03f));
  q = S::fma(t2, q, S::set1(-7.37332916720468e-03f));
  q = S::fma(t2, q, S::set1(-1.42647390514189e-02f));
  const V erf = S::div(p, q);
  return S::mul(S::mul(S::set1(0.5f), x), S::add(S::set1(1.f), erf));
}
// tanh GELU, rewritten exactly as 0.5 x (1 + tanh(u)) = x / (1 + exp(-2u)):
// one exp and one division, and no cancellation in 1 + tanh(u) for u << 0.
template <class S>
typename S::V vgelu_tanh(typename S::V x) {
  using V = typename S::V;
  const V x3 = S::mul(S::mul(x, x), x);
  // -2 sqrt(2/pi) (x + 0.044715 x^3)
  const V m2u = S::mul(S::set1(-1.5957691216057308f), S::fma(S::set1(0.044715f), x3, x));
  return S::div(x, S::add(S::set1(1.f), S::exp(m2u)));
}
template <class S>
void act_row_simd(typename S::T* c, int n, Act act) {
  if constexpr (S::kVecMath) {
    for (int j = 0; j < n; j += S::L) {
      const typename S::M m = S::mask(n - j);
      const typename S::V x = S::maskz_load(m, c + j);
      S::mask_store(c + j, m, act == Act::gelu ? vgelu_erf<S>(x) : vgelu_tanh<S>(x));
    }
  } else {
    act_row(c, n, act);
  }
}

}  // namespace
}  // namespace kiln::cpu::gemm
