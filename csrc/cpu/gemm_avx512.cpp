// AVX-512 GEMM: the generic driver and micro-kernel of gemm_driver.h bound to
// 512-bit vectors. Tiles: fp32 14 x 32, fp64 14 x 16 -- 28 accumulators + 2 B
// vectors + 1 broadcast = 31 of the 32 zmm registers, 28 FMAs per 16 loads
// (2 B vectors, 14 broadcasts from L1) per k step. Edge columns use AVX-512
// masked loads/stores, which never fault on the masked-off lanes.
// Compiled with -mavx512f/dq/bw/vl (CMakeLists.txt); only called when
// isa() == avx512.
#include <immintrin.h>

#include "cpu/gemm_driver.h"

namespace kiln::cpu::gemm {
namespace {

struct F32x16 {
  using T = float;
  using V = __m512;
  using M = __mmask16;
  static constexpr int L = 16;
  static V zero() { return _mm512_setzero_ps(); }
  static V load(const T* p) { return _mm512_loadu_ps(p); }
  static V bcast(const T* p) { return _mm512_set1_ps(*p); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  // x < 0 ? 0 : x, lane-wise: NaN (unordered) and -0 pass through, as in the
  // scalar path. (Spelled as a masked move: GCC 12 warns on _mm512_max_ps.)
  static V relu(V x) {
    const V z = _mm512_setzero_ps();
    return _mm512_mask_mov_ps(x, _mm512_cmp_ps_mask(x, z, _CMP_LT_OQ), z);
  }
  static M mask(int n) { return n <= 0 ? M(0) : n >= L ? M(0xFFFF) : M((1u << n) - 1); }
  static V maskz_load(M m, const T* p) { return _mm512_maskz_loadu_ps(m, p); }
  static void store(T* p, V x) { _mm512_storeu_ps(p, x); }
  static void mask_store(T* p, M m, V x) { _mm512_mask_storeu_ps(p, m, x); }
  static void prefetch_w(const T* p, int n) {
    _mm_prefetch(reinterpret_cast<const char*>(p), _MM_HINT_T0);
    if (n > L) _mm_prefetch(reinterpret_cast<const char*>(p + n - 1), _MM_HINT_T0);
  }
};

struct F64x8 {
  using T = double;
  using V = __m512d;
  using M = __mmask8;
  static constexpr int L = 8;
  static V zero() { return _mm512_setzero_pd(); }
  static V load(const T* p) { return _mm512_loadu_pd(p); }
  static V bcast(const T* p) { return _mm512_set1_pd(*p); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_pd(a, b, c); }
  static V add(V a, V b) { return _mm512_add_pd(a, b); }
  static V relu(V x) {
    const V z = _mm512_setzero_pd();
    return _mm512_mask_mov_pd(x, _mm512_cmp_pd_mask(x, z, _CMP_LT_OQ), z);
  }
  static M mask(int n) { return n <= 0 ? M(0) : n >= L ? M(0xFF) : M((1u << n) - 1); }
  static V maskz_load(M m, const T* p) { return _mm512_maskz_loadu_pd(m, p); }
  static void store(T* p, V x) { _mm512_storeu_pd(p, x); }
  static void mask_store(T* p, M m, V x) { _mm512_mask_storeu_pd(p, m, x); }
  static void prefetch_w(const T* p, int n) {
    _mm_prefetch(reinterpret_cast<const char*>(p), _MM_HINT_T0);
    if (n > L) _mm_prefetch(reinterpret_cast<const char*>(p + n - 1), _MM_HINT_T0);
  }
};

using KernelF32 = MicroKernel<F32x16, 14, 2>;
using KernelF64 = MicroKernel<F64x8, 14, 2>;

}  // namespace

void run_avx512(const Problem<float>& p) { run_problem<KernelF32>(p); }
void run_avx512(const Problem<double>& p) { run_problem<KernelF64>(p); }

}  // namespace kiln::cpu::gemm
