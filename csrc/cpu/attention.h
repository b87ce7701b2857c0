// Internal interface of the fused attention kernels (attention.cpp drives, the tile
// primitives below do the arithmetic). Plain declarations only, so this header is safe to
// include from files compiled with different -m flags (see gemm.h for the ODR reason).
//
// Scores are kept in base 2 (q is pre-scaled by scale * log2(e)), so every exponential is an
// exp2: one multiply less and a shorter range reduction than exp.
//
// Layout convention of every score tile: "S^T", rows = keys j (jn <= Bc of them), lanes =
// queries i (br of them, a multiple of 16, padded lanes hold harmless finite values). With
// queries on the SIMD lanes the softmax statistics (row max / sum per query) are plain
// lane-wise vector operations, with no horizontal reductions.
#pragma once
#include <cstdint>

namespace kiln::cpu::attn {

// Tile primitives for one dtype and ISA.
template <class T>
struct Ops {
  // C[M x N] = (acc ? C * cs : 0) + sum_k A[m * sam + k * sak] * B[k * ldb + n], where row m
  // of C is scaled by cs[m] when cs is given (the online softmax's rescale, fused). A is only
  // ever broadcast element by element, so any strides work; B and C rows are contiguous.
  void (*gemm)(int64_t M, int64_t N, int64_t K, const T* A, int64_t sam, int64_t sak,
               const T* B, int64_t ldb, T* C, int64_t ldc, bool acc, const T* cs);
  // Online-softmax step of the forward pass on an S^T tile (jn rows of br lanes), in place:
  // m_new = max(m, max_j s), alpha = 2^(m - m_new), s = 2^(s - m_new), l = l * alpha + sum_j s.
  // A lane whose m_new is -inf (all keys so far masked) uses 0 as the shift, so it gets p = 0.
  void (*softmax_step)(T* s, int64_t jn, int64_t br, T* m, T* l, T* alpha);
  // Backward: s = 2^(s - lse) per lane (lse in base 2; lse = +inf gives p = 0).
  void (*exp_sub)(T* s, int64_t jn, int64_t br, const T* lse);
  // Backward: dp = p * (dp - di) per lane, in place in dp.
  void (*ds)(const T* p, T* dp, int64_t jn, int64_t br, const T* di);
  // Packing: dst[d * br + i] = i < n ? src[i * ld + d] * sc : 0 for d < D, i < br (a tile of
  // rows transposed so that its rows become lanes; br a multiple of 16, <= 64).
  void (*pack_t)(const T* src, int64_t ld, int64_t n, int64_t D, T sc, T* dst, int64_t br);
  // di[i] = sum_d a[i * ld + d] * b[i * ld + d] for i < n (D_i = rowsum(dO * O)).
  void (*rowdot)(const T* a, const T* b, int64_t ld, int64_t n, int64_t D, T* di);
  // Backward GEMMs with the elementwise step fused into the store (C is overwritten, N = the
  // query lanes): gemm_exp: C = 2^(A B - lse[n]) (gemm then exp_sub); gemm_ds: C = p[m * ldc
  // + n] * (A B - di[n]) (gemm then ds).
  void (*gemm_exp)(int64_t M, int64_t N, int64_t K, const T* A, int64_t sam, int64_t sak,
                   const T* B, int64_t ldb, T* C, int64_t ldc, const T* lse);
  void (*gemm_ds)(int64_t M, int64_t N, int64_t K, const T* A, int64_t sam, int64_t sak,
                  const T* B, int64_t ldb, T* C, int64_t ldc, const T* p, const T* di);
  // Queue [p, p + bytes) for software prefetch into L2: the calling thread's next GEMMs
  // issue it a line at a time from their k loops (or null: no prefetching).
  void (*prefetch)(const void* p, int64_t bytes);
};

const Ops<float>& ops_avx512_f32();  // attention_avx512.cpp
template <class T>
const Ops<T>& ops_portable();  // attention_tiles.cpp

}  // namespace kiln::cpu::attn
