// Portable GEMM for CPUs without AVX2 (and for testing that path anywhere):
// the generic driver and micro-kernel of gemm_driver.h with one-element
// "vectors". The 4 x 4 tile keeps 16 accumulators, which at the baseline
// x86-64 target (SSE2, 16 xmm registers) the compiler may still vectorize.
#include "cpu/gemm_run.h"

namespace kiln::cpu::gemm {
namespace {

template <class T_>
struct Scalar {
  using T = T_;
  using V = T;
  using M = bool;
  static constexpr int L = 1;
  static V zero() { return T(0); }
  static V load(const T* p) { return *p; }
  static V bcast(const T* p) { return *p; }
  static V fma(V a, V b, V c) { return c + a * b; }
  static V add(V a, V b) { return a + b; }
  // Written so that NaN propagates, like torch.relu.
  static V relu(V x) { return x < T(0) ? T(0) : x; }
  static V relu_mask(V x, V m) { return m <= T(0) ? T(0) : x; }
  static M mask(int n) { return n > 0; }
  static V maskz_load(M m, const T* p) { return m ? *p : T(0); }
  static void store(T* p, V x) { *p = x; }
  static void mask_store(T* p, M m, V x) {
    if (m) *p = x;
  }
  static void prefetch_w(const T*, int) {}
  static constexpr bool kVecMath = false;  // GELU through libm
  static constexpr bool kTransposePack = false;
};

using KernelF32 = MicroKernel<Scalar<float>, 4, 4>;
using KernelF64 = MicroKernel<Scalar<double>, 4, 4>;

}  // namespace

void run_scalar(const Problem<float>& p) { run_problem<KernelF32>(p); }
void run_scalar(const Problem<double>& p) { run_problem<KernelF64>(p); }

}  // namespace kiln::cpu::gemm
