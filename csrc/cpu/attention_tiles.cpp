// Portable tile primitives of the fused attention kernels (see attention.h): plain loops in
// T, used for float64 and for float32 below AVX-512 (kiln._cpu.set_isa('scalar' / 'avx2')).
// The inner loops run along contiguous lanes so the compiler can vectorise them with the
// baseline instruction set.
#include <cmath>
#include <limits>

#include "cpu/attention.h"

namespace kiln::cpu::attn {
namespace {

template <class T>
void gemm(int64_t M, int64_t N, int64_t K, const T* A, int64_t sam, int64_t sak, const T* B,
          int64_t ldb, T* C, int64_t ldc, bool acc, const T* cs) {
  for (int64_t m = 0; m < M; ++m) {
    T* __restrict c = C + m * ldc;
    if (!acc)
      for (int64_t n = 0; n < N; ++n) c[n] = T(0);
    else if (cs)
      for (int64_t n = 0; n < N; ++n) c[n] *= cs[m];
    for (int64_t k = 0; k < K; ++k) {
      const T a = A[m * sam + k * sak];
      const T* __restrict b = B + k * ldb;
      for (int64_t n = 0; n < N; ++n) c[n] += a * b[n];
    }
  }
}

template <class T>
void softmax_step(T* s, int64_t jn, int64_t br, T* m, T* l, T* alpha) {
  constexpr T ninf = -std::numeric_limits<T>::infinity();
  T mn[64], sum[64];  // br <= 64 (attention.cpp's query tile)
  for (int64_t i = 0; i < br; ++i) mn[i] = m[i], sum[i] = 0;
  for (int64_t j = 0; j < jn; ++j)
    for (int64_t i = 0; i < br; ++i) mn[i] = s[j * br + i] > mn[i] ? s[j * br + i] : mn[i];
  for (int64_t i = 0; i < br; ++i) {
    const T shift = mn[i] == ninf ? T(0) : mn[i];
    alpha[i] = std::exp2(m[i] - shift);
    m[i] = mn[i];
    mn[i] = shift;
  }
  for (int64_t j = 0; j < jn; ++j)
    for (int64_t i = 0; i < br; ++i) {
      const T p = std::exp2(s[j * br + i] - mn[i]);
      s[j * br + i] = p;
      sum[i] += p;
    }
  for (int64_t i = 0; i < br; ++i) l[i] = l[i] * alpha[i] + sum[i];
}

template <class T>
void exp_sub(T* s, int64_t jn, int64_t br, const T* lse) {
  for (int64_t j = 0; j < jn; ++j)
    for (int64_t i = 0; i < br; ++i) s[j * br + i] = std::exp2(s[j * br + i] - lse[i]);
}

template <class T>
void ds(const T* p, T* dp, int64_t jn, int64_t br, const T* di) {
  for (int64_t j = 0; j < jn; ++j)
    for (int64_t i = 0; i < br; ++i) dp[j * br + i] = p[j * br + i] * (dp[j * br + i] - di[i]);
}

template <class T>
void pack_t(const T* src, int64_t ld, int64_t n, int64_t D, T sc, T* dst, int64_t br) {
  for (int64_t i = 0; i < br; ++i)
    for (int64_t d = 0; d < D; ++d) dst[d * br + i] = i < n ? src[i * ld + d] * sc : T(0);
}

template <class T>
void rowdot(const T* a, const T* b, int64_t ld, int64_t n, int64_t D, T* di) {
  for (int64_t i = 0; i < n; ++i) {
    double s = 0;
    for (int64_t d = 0; d < D; ++d) s += double(a[i * ld + d]) * double(b[i * ld + d]);
    di[i] = T(s);
  }
}

template <class T>
void gemm_exp(int64_t M, int64_t N, int64_t K, const T* A, int64_t sam, int64_t sak, const T* B,
              int64_t ldb, T* C, int64_t ldc, const T* lse) {
  gemm<T>(M, N, K, A, sam, sak, B, ldb, C, ldc, false, nullptr);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) C[m * ldc + n] = std::exp2(C[m * ldc + n] - lse[n]);
}

template <class T>
void gemm_ds(int64_t M, int64_t N, int64_t K, const T* A, int64_t sam, int64_t sak, const T* B,
             int64_t ldb, T* C, int64_t ldc, const T* p, const T* di) {
  gemm<T>(M, N, K, A, sam, sak, B, ldb, C, ldc, false, nullptr);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) C[m * ldc + n] = p[m * ldc + n] * (C[m * ldc + n] - di[n]);
}

}  // namespace

template <class T>
const Ops<T>& ops_portable() {
  static const Ops<T> ops{&gemm<T>,   &softmax_step<T>, &exp_sub<T>, &ds<T>,
                          &pack_t<T>, &rowdot<T>,       &gemm_exp<T>, &gemm_ds<T>, nullptr};
  return ops;
}
template const Ops<float>& ops_portable<float>();
template const Ops<double>& ops_portable<double>();

}  // namespace kiln::cpu::attn
