// AVX-512 float32 tile primitives of the fused attention kernels (see attention.h).
//
// gemm: register-blocked C[MR x 16*NV] += A[MR x K] * B[K x 16*NV]. Per k step: NV vector
// loads of one B row, MR broadcasts of A (any stride: vbroadcastss from memory), MR * NV
// FMAs. MR x NV = 6 x 4 (24 accumulators) for wide tiles -- 10 loads per 24 FMAs, so the two
// FMA ports, not the load ports, bound the loop -- and 12 x 2 / 12 x 1 for narrow ones. The
// last vector of a row uses a lane mask (head dims that are not multiples of 16); masked
// lanes are never loaded or stored, so nothing outside the arrays is touched.
// Softmax tiles: queries are the lanes, so max, exp2 and sums are lane-wise.
// Compiled with -mavx512f/dq/bw/vl; called only when isa() == avx512.
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <utility>

#include "cpu/attention.h"

namespace kiln::cpu::attn {
namespace {

// 2^x: n = round(x), f = x - n in [-1/2, 1/2], 2^f by a degree-5 polynomial fitted for
// relative error on that interval (7.5e-8 with exact coefficients, 2.3e-7 evaluated in
// float32 -- the same as the degree-6 Taylor polynomial it replaced, one FMA less: the exp
// is ~15% of the backward's S GEMM and of the forward's softmax), scalef applies 2^n
// (overflow -> inf).
// Lanes below -126 (where 2^x leaves the normal range; -inf for masked scores) give exactly
// 0, so masked scores never produce denormals (slow microcode assists) or NaN; NaN stays NaN.
inline __m512 exp2(__m512 x) {
  const __mmask16 keep = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-126.0f), _CMP_NLT_UQ);
  const __m512 n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 f = _mm512_sub_ps(x, n);
  __m512 p = _mm512_set1_ps(0.0013276373501867056f);
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.009675540961325169f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.05550713464617729f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.24022120237350464f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.6931469440460205f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0000001192092896f));
  return _mm512_maskz_scalef_ps(keep, p, n);
}

using Kernel = void (*)(int64_t K, const float* A, int64_t sam, int64_t sak, const float* B,
                        int64_t ldb, float* C, int64_t ldc, __mmask16 tail, bool acc,
                        const float* cs, int epi, const float* ev, const float* ep,
                        const char* pf, int64_t npf);

// Software prefetch into L2 of operands the caller needs next (attention.cpp queues the next
// query tile's operands), issued from the micro-kernels' k loops at one line per kPfEvery k
// steps: spread out, because a burst fills the line-fill buffers and stalls the loads behind
// it (the same finding as gemm_driver.h's NextPrefetch).
constexpr int kPfEvery = 4;
struct PfQueue {
  const char* p[16];
  int64_t lines[16];
  int head = 0, n = 0;
  void add(const void* ptr, int64_t bytes) {
    if (n == 16 || bytes <= 0) return;
    const int i = (head + n++) % 16;
    p[i] = static_cast<const char*>(ptr), lines[i] = (bytes + 63) / 64;
  }
  // up to `want` lines of the current range (fewer at its end)
  int64_t take(int64_t want, const char** at) {
    const int64_t got = std::min(want, lines[head]);
    *at = p[head];
    p[head] += 64 * got, lines[head] -= got;
    if (!lines[head]) head = (head + 1) % 16, --n;
    return got;
  }
};
thread_local PfQueue t_pf;

template <int MR, int NV>
void micro(int64_t K, const float* A, int64_t sam, int64_t sak, const float* B, int64_t ldb,
           float* C, int64_t ldc, __mmask16 tail, bool acc, const float* cs, int epi,
           const float* ev, const float* ep, const char* pf, int64_t npf) {
  // Fully unrolled so that the MR * NV accumulators live in registers.
  __m512 c[MR][NV];
  if (acc) {
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
#pragma GCC unroll 4
      for (int v = 0; v < NV - 1; ++v) c[r][v] = _mm512_loadu_ps(C + r * ldc + 16 * v);
      c[r][NV - 1] = _mm512_maskz_loadu_ps(tail, C + r * ldc + 16 * (NV - 1));
      if (cs) {
        const __m512 f = _mm512_set1_ps(cs[r]);
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) c[r][v] = _mm512_mul_ps(c[r][v], f);
      }
    }
  } else {
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) c[r][v] = _mm512_setzero_ps();
  }
  for (int64_t k = 0; k < K; ++k) {
    const float* b = B + k * ldb;
    __m512 bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV - 1; ++v) bv[v] = _mm512_loadu_ps(b + 16 * v);
    bv[NV - 1] = _mm512_maskz_loadu_ps(tail, b + 16 * (NV - 1));
    const float* a = A + k * sak;
    if (k < npf * kPfEvery && k % kPfEvery == 0)
      __builtin_prefetch(pf + 64 * (k / kPfEvery), 0, 2);  // prefetcht1: into L2
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      const __m512 av = _mm512_set1_ps(a[r * sam]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) c[r][v] = _mm512_fmadd_ps(av, bv[v], c[r][v]);
    }
  }
  // Fused epilogues of the backward (values still in registers, no extra pass over the tile):
  // 1: P = 2^(S - lse[n]); 2: dS = P[m][n] * (dP - D[n]) with P read at ep (same ldc).
  if (epi == 1) {
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      const __m512 e = _mm512_maskz_loadu_ps(v == NV - 1 ? tail : __mmask16(0xFFFF), ev + 16 * v);
#pragma GCC unroll 16
      for (int r = 0; r < MR; ++r) c[r][v] = exp2(_mm512_sub_ps(c[r][v], e));
    }
  } else if (epi == 2) {
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      const __mmask16 mk = v == NV - 1 ? tail : __mmask16(0xFFFF);
      const __m512 e = _mm512_maskz_loadu_ps(mk, ev + 16 * v);
#pragma GCC unroll 16
      for (int r = 0; r < MR; ++r)
        c[r][v] = _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, ep + r * ldc + 16 * v),
                                _mm512_sub_ps(c[r][v], e));
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) {
#pragma GCC unroll 4
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

void gemm_epi(int64_t M, int64_t N, int64_t K, const float* A, int64_t sam, int64_t sak,
              const float* B, int64_t ldb, float* C, int64_t ldc, bool acc, const float* cs,
              int epi, const float* ev, const float* ep) {
  static const Table table;
  for (int64_t n0 = 0; n0 < N; n0 += 64) {
    const int64_t nn = std::min<int64_t>(64, N - n0);
    const int nv = int((nn + 15) / 16);
    const __mmask16 tail = static_cast<__mmask16>((1u << (nn - 16 * (nv - 1))) - 1u);
    const int mr_max = nv >= 3 ? 6 : kMaxMR;
    for (int64_t m0 = 0, mr = 0; m0 < M; m0 += mr) {
      // 6-row tiles, but a remainder of 1 or 2 rows is avoided by ending on 4 + 4 (4 + 3):
      // a 128-row tile is 20 x 6 + 4 + 4 rather than 21 x 6 + 2 (a 2-row call streams the
      // same B rows for a third of the FMAs; measured alone, the backward's 128-row tile
      // GEMMs got 0-1.3% faster)
      const int64_t rest = M - m0;
      mr = mr_max == 6 && (rest == 7 || rest == 8) ? 4 : std::min<int64_t>(mr_max, rest);
      const char* pf = nullptr;
      const int64_t npf = t_pf.n ? t_pf.take((K + kPfEvery - 1) / kPfEvery, &pf) : 0;
      table.k[nv - 1][mr - 1](K, A + m0 * sam, sam, sak, B + n0, ldb, C + m0 * ldc + n0, ldc,
                              nn == 16 * nv ? __mmask16(0xFFFF) : tail, acc,
                              cs ? cs + m0 : nullptr, epi, ev ? ev + n0 : nullptr,
                              ep ? ep + m0 * ldc + n0 : nullptr, pf, npf);
    }
  }
}

void gemm(int64_t M, int64_t N, int64_t K, const float* A, int64_t sam, int64_t sak,
          const float* B, int64_t ldb, float* C, int64_t ldc, bool acc, const float* cs) {
  gemm_epi(M, N, K, A, sam, sak, B, ldb, C, ldc, acc, cs, 0, nullptr, nullptr);
}

void gemm_exp(int64_t M, int64_t N, int64_t K, const float* A, int64_t sam, int64_t sak,
              const float* B, int64_t ldb, float* C, int64_t ldc, const float* lse) {
  gemm_epi(M, N, K, A, sam, sak, B, ldb, C, ldc, false, nullptr, 1, lse, nullptr);
}

void gemm_ds(int64_t M, int64_t N, int64_t K, const float* A, int64_t sam, int64_t sak,
             const float* B, int64_t ldb, float* C, int64_t ldc, const float* p, const float* di) {
  gemm_epi(M, N, K, A, sam, sak, B, ldb, C, ldc, false, nullptr, 2, di, p);
}

void softmax_step(float* s, int64_t jn, int64_t br, float* m, float* l, float* alpha) {
  const __m512 ninf = _mm512_set1_ps(-INFINITY);
  for (int64_t i = 0; i < br; i += 16) {
    const __m512 m_old = _mm512_loadu_ps(m + i);
    // four independent max chains: one chain is bound by the max latency (4 cycles a row),
    // which made this pass cost ~40% of the whole step (64 x 64 tile: 2260 -> 1590 TSC cycles)
    __m512 mx0 = m_old, mx1 = m_old, mx2 = m_old, mx3 = m_old;
    int64_t j4 = 0;
    for (; j4 + 4 <= jn; j4 += 4) {
      mx0 = _mm512_max_ps(_mm512_loadu_ps(s + j4 * br + i), mx0);
      mx1 = _mm512_max_ps(_mm512_loadu_ps(s + (j4 + 1) * br + i), mx1);
      mx2 = _mm512_max_ps(_mm512_loadu_ps(s + (j4 + 2) * br + i), mx2);
      mx3 = _mm512_max_ps(_mm512_loadu_ps(s + (j4 + 3) * br + i), mx3);
    }
    for (; j4 < jn; ++j4) mx0 = _mm512_max_ps(_mm512_loadu_ps(s + j4 * br + i), mx0);
    const __m512 mx = _mm512_max_ps(_mm512_max_ps(mx0, mx1), _mm512_max_ps(mx2, mx3));
    // all-masked lanes so far: shift by 0 so that exp(-inf - shift) = 0, not NaN
    const __m512 shift = _mm512_mask_mov_ps(mx, _mm512_cmp_ps_mask(mx, ninf, _CMP_EQ_OQ),
                                            _mm512_setzero_ps());
    const __m512 a = exp2(_mm512_sub_ps(m_old, shift));
    __m512 sum0 = _mm512_setzero_ps(), sum1 = _mm512_setzero_ps();
    int64_t j = 0;
    for (; j + 2 <= jn; j += 2) {
      const __m512 p0 = exp2(_mm512_sub_ps(_mm512_loadu_ps(s + j * br + i), shift));
      const __m512 p1 = exp2(_mm512_sub_ps(_mm512_loadu_ps(s + (j + 1) * br + i), shift));
      _mm512_storeu_ps(s + j * br + i, p0);
      _mm512_storeu_ps(s + (j + 1) * br + i, p1);
      sum0 = _mm512_add_ps(sum0, p0);
      sum1 = _mm512_add_ps(sum1, p1);
    }
    if (j < jn) {
      const __m512 p0 = exp2(_mm512_sub_ps(_mm512_loadu_ps(s + j * br + i), shift));
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
      _mm512_storeu_ps(s + j * br + i, exp2(_mm512_sub_ps(_mm512_loadu_ps(s + j * br + i), sh)));
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

// In-register 16 x 16 transpose: three shuffle stages (pairs of rows, 128-bit lanes, 256-bit
// halves), 64 shuffles per 256 elements instead of 256 scalar stores with stride br.
inline void transpose16(__m512 r[16]) {
  __m512 t[16], u[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {
    u[4 * i] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
    u[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
    u[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
    u[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
  }
  for (int h = 0; h < 2; ++h)
    for (int i = 0; i < 4; ++i) {
      t[8 * h + i] = _mm512_shuffle_f32x4(u[8 * h + i], u[8 * h + 4 + i], 0x88);
      t[8 * h + 4 + i] = _mm512_shuffle_f32x4(u[8 * h + i], u[8 * h + 4 + i], 0xDD);
    }
  for (int i = 0; i < 8; ++i) {
    r[i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0x88);
    r[8 + i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0xDD);
  }
}

void pack_t(const float* src, int64_t ld, int64_t n, int64_t D, float sc, float* dst,
            int64_t br) {
  const __m512 s = _mm512_set1_ps(sc);
  for (int64_t i0 = 0; i0 < br; i0 += 16)
    for (int64_t d0 = 0; d0 < D; d0 += 16) {
      const int64_t dn = std::min<int64_t>(16, D - d0);
      const __mmask16 m = static_cast<__mmask16>((1u << dn) - 1u);
      __m512 r[16];
#pragma GCC unroll 16
      for (int i = 0; i < 16; ++i)
        r[i] = i0 + i < n ? _mm512_mul_ps(_mm512_maskz_loadu_ps(m, src + (i0 + i) * ld + d0), s)
                          : _mm512_setzero_ps();
      transpose16(r);
      for (int64_t d = 0; d < dn; ++d) _mm512_storeu_ps(dst + (d0 + d) * br + i0, r[d]);
    }
}

void rowdot(const float* a, const float* b, int64_t ld, int64_t n, int64_t D, float* di) {
  for (int64_t i = 0; i < n; ++i) {
    __m512 acc = _mm512_setzero_ps();
    for (int64_t d = 0; d < D; d += 16) {
      const __mmask16 m = static_cast<__mmask16>(D - d >= 16 ? 0xFFFFu : (1u << (D - d)) - 1u);
      acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i * ld + d),
                            _mm512_maskz_loadu_ps(m, b + i * ld + d), acc);
    }
    di[i] = _mm512_reduce_add_ps(acc);
  }
}

}  // namespace

const Ops<float>& ops_avx512_f32() {
  static const Ops<float> ops{&gemm,   &softmax_step, &exp_sub, &ds,
                              &pack_t, &rowdot,       &gemm_exp, &gemm_ds,
                              [](const void* p, int64_t bytes) { t_pf.add(p, bytes); }};
  return ops;
}

}  // namespace kiln::cpu::attn
