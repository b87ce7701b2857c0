// AVX-512 float32 tile primitives of the fused attention kernels (see attention.h).
//
// gemm: register-blocked C[MR x 16*NV] += A[MR x K] * B[K x 16*NV]. Per k step: NV vector
// loads of one B row, MR broadcasts of A (any stride: vbroadcastss from memory), MR * NV
// FMAs. MR x NV = 6 x 4 (24 accumulators) for wide tiles -- 10 loads per 24 FMAs, so the two
// FMA ports, not the load ports, bound the loop -- and 12 x 2 / 12 x 1 for narrow ones. The
// last vector of a row uses a lane mask (head dims that are not multiples of 16); masked
// lanes are never loaded or stored, so nothing outside the arrays is touched.
// Softmax tiles: queries are the lanes, so max, exp (vm::exp, <= 2 ulp) and sums are lane-wise.
// Compiled with -mavx512f/dq/bw/vl; called only when isa() == avx512.
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <utility>

#include "cpu/attention.h"
#include "cpu/vecmath_avx512.h"

namespace kiln::cpu::attn {
namespace {

using Kernel = void (*)(int64_t K, const float* A, int64_t sam, int64_t sak, const float* B,
                        int64_t ldb, float* C, int64_t ldc, __mmask16 tail, bool acc);

template <int MR, int NV>
void micro(int64_t K, const float* A, int64_t sam, int64_t sak, const float* B, int64_t ldb,
           float* C, int64_t ldc, __mmask16 tail, bool acc) {
  __m512 c[MR][NV];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) {
      if (!acc) c[r][v] = _mm512_setzero_ps();
      else if (v == NV - 1) c[r][v] = _mm512_maskz_loadu_ps(tail, C + r * ldc + 16 * v);
      else c[r][v] = _mm512_loadu_ps(C + r * ldc + 16 * v);
    }
  for (int64_t k = 0; k < K; ++k) {
    const float* b = B + k * ldb;
    __m512 bv[NV];
    for (int v = 0; v < NV - 1; ++v) bv[v] = _mm512_loadu_ps(b + 16 * v);
    bv[NV - 1] = _mm512_maskz_loadu_ps(tail, b + 16 * (NV - 1));
    const float* a = A + k * sak;
    for (int r = 0; r < MR; ++r) {
      const __m512 av = _mm512_set1_ps(a[r * sam]);
      for (int v = 0; v < NV; ++v) c[r][v] = _mm512_fmadd_ps(av, bv[v], c[r][v]);
    }
  }
  for (int r = 0; r < MR; ++r) {
    for (int v = 0; v < NV - 1; ++v) _mm512_storeu_ps(C + r * ldc + 16 * v, c[r][v]);
    _mm512_mask_storeu_ps(C + r * ldc + 16 * (NV - 1), tail, c[r][NV - 1]);
  }
}

constexpr int kMaxMR = 12;

template <int NV, int... R>
constexpr std::array<Kernel, sizeof...(R)> row_table(std::integer_sequence<int, R...>) {
  return {&micro<R + 1, NV>...};
}

struct Table {
  std::array<Kernel, kMaxMR> k[4];
  Table() {
    k[0] = row_table<1>(std::make_integer_sequence<int, kMaxMR>{});
    k[1] = row_table<2>(std::make_integer_sequence<int, kMaxMR>{});
    k[2] = row_table<3>(std::make_integer_sequence<int, kMaxMR>{});
    k[3] = row_table<4>(std::make_integer_sequence<int, kMaxMR>{});
  }
};

void gemm(int64_t M, int64_t N, int64_t K, const float* A, int64_t sam, int64_t sak,
          const float* B, int64_t ldb, float* C, int64_t ldc, bool acc) {
  static const Table table;
  for (int64_t n0 = 0; n0 < N; n0 += 64) {
    const int64_t nn = std::min<int64_t>(64, N - n0);
    const int nv = int((nn + 15) / 16);
    const __mmask16 tail = static_cast<__mmask16>((1u << (nn - 16 * (nv - 1))) - 1u);
    const int mr_max = nv >= 3 ? 6 : kMaxMR;
    for (int64_t m0 = 0; m0 < M; m0 += mr_max) {
      const int mr = int(std::min<int64_t>(mr_max, M - m0));
      table.k[nv - 1][mr - 1](K, A + m0 * sam, sam, sak, B + n0, ldb, C + m0 * ldc + n0, ldc,
                              nn == 16 * nv ? __mmask16(0xFFFF) : tail, acc);
    }
  }
}

void softmax_step(float* s, int64_t jn, int64_t br, float* m, float* l, float* alpha) {
  const __m512 ninf = _mm512_set1_ps(-INFINITY);
  for (int64_t i = 0; i < br; i += 16) {
    const __m512 m_old = _mm512_loadu_ps(m + i);
    __m512 mx = m_old;
    for (int64_t j = 0; j < jn; ++j) mx = _mm512_max_ps(_mm512_loadu_ps(s + j * br + i), mx);
    // all-masked lanes so far: shift by 0 so that exp(-inf - shift) = 0, not NaN
    const __m512 shift = _mm512_mask_mov_ps(mx, _mm512_cmp_ps_mask(mx, ninf, _CMP_EQ_OQ),
                                            _mm512_setzero_ps());
    const __m512 a = vm::exp(_mm512_sub_ps(m_old, shift));
    __m512 sum0 = _mm512_setzero_ps(), sum1 = _mm512_setzero_ps();
    int64_t j = 0;
    for (; j + 2 <= jn; j += 2) {
      const __m512 p0 = vm::exp(_mm512_sub_ps(_mm512_loadu_ps(s + j * br + i), shift));
      const __m512 p1 = vm::exp(_mm512_sub_ps(_mm512_loadu_ps(s + (j + 1) * br + i), shift));
      _mm512_storeu_ps(s + j * br + i, p0);
      _mm512_storeu_ps(s + (j + 1) * br + i, p1);
      sum0 = _mm512_add_ps(sum0, p0);
      sum1 = _mm512_add_ps(sum1, p1);
    }
    if (j < jn) {
      const __m512 p0 = vm::exp(_mm512_sub_ps(_mm512_loadu_ps(s + j * br + i), shift));
      _mm512_storeu_ps(s + j * br + i, p0);
      sum0 = _mm512_add_ps(sum0, p0);
    }
    _mm512_storeu_ps(l + i, _mm512_fmadd_ps(_mm512_loadu_ps(l + i), a, _mm512_add_ps(sum0, sum1)));
    _mm512_storeu_ps(m + i, mx);
    _mm512_storeu_ps(alpha + i, a);
  }
}

void exp_sub(float* s, int64_t jn, int64_t br, const float* lse) {
  for (int64_t i = 0; i < br; i += 16) {
    const __m512 sh = _mm512_loadu_ps(lse + i);
    for (int64_t j = 0; j < jn; ++j)
      _mm512_storeu_ps(s + j * br + i, vm::exp(_mm512_sub_ps(_mm512_loadu_ps(s + j * br + i), sh)));
  }
}

void ds(const float* p, float* dp, int64_t jn, int64_t br, const float* di) {
  for (int64_t i = 0; i < br; i += 16) {
    const __m512 d = _mm512_loadu_ps(di + i);
    for (int64_t j = 0; j < jn; ++j) {
      const int64_t o = j * br + i;
      _mm512_storeu_ps(dp + o, _mm512_mul_ps(_mm512_loadu_ps(p + o),
                                             _mm512_sub_ps(_mm512_loadu_ps(dp + o), d)));
    }
  }
}

}  // namespace

const Ops<float>& ops_avx512_f32() {
  static const Ops<float> ops{&gemm, &softmax_step, &exp_sub, &ds};
  return ops;
}

}  // namespace kiln::cpu::attn
