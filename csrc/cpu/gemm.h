// gemm internals shared by the dispatcher (gemm.cpp) and the per-ISA drivers
// (gemm_avx512.cpp, gemm_avx2.cpp, gemm_scalar.cpp).
//
// Computes out[b] = act(op(a[b]) @ op(b[b]) + bias) for a batch of row-major
// matrices. This header holds only plain data (the problem description and the
// blocking sizes) and the declarations of out-of-line functions, so it is safe
// to include from translation units compiled with different -m flags: nothing
// here can be emitted as an inline function carrying AVX-512 code into a
// baseline caller (the ODR hazard of mixing ISA flags).
#pragma once
#include <cstddef>
#include <cstdint>

namespace kiln::cpu::gemm {

enum class Act { none, relu, gelu, gelu_tanh };

// One batched GEMM, already validated. Strides are in elements. A batch stride
// of 0 broadcasts that operand over the batch without copying it.
template <class T>
struct Problem {
  const T* a;
  const T* b;
  T* c;
  const T* bias;  // (N,) or nullptr
  int64_t batch, M, N, K;
  int64_t a_bstride, b_bstride, c_bstride;
  bool trans_a, trans_b;  // a stored (K, M) / b stored (N, K)
  Act act;
  // Or nullptr. Laid out as c (same strides): after bias and act, c = mask <= 0 ? 0 : c
  // (relu_backward of the product, matmul_relu_backward).
  const T* mask = nullptr;
};

// Cache blocking for one micro-kernel shape (MR x NR) and element size:
//   kc: depth of one packed panel pair; the MR x kc A micro-panel stays in L1
//   nb: columns of the packed B block (kc x nb stays in L2)
//   mb: rows of the packed A block (mb x kc, streamed from L3)
struct Blocking {
  int64_t kc, nb, mb;
};
// Derived from the cache sizes the OS reports (sysconf), with fallbacks.
Blocking blocking_for(int mr, int nr, std::size_t elem_size);

// Per-thread, grow-only, 64-byte aligned scratch (slot 0: packed A, slot 1:
// packed B, slot 2: edge panel). Reused across calls so the hot path never
// allocates or page-faults after warm-up. Returns nullptr when out of memory
// (it is called inside OpenMP regions, where an exception would terminate).
void* workspace(int slot, std::size_t bytes);

// Number of threads to use for `flops` of work (1 for tiny problems: an
// OpenMP fork costs more than it saves there).
int threads_for(double flops);

// Per-ISA entry points; each runs the whole batched problem with OpenMP.
void run_avx512(const Problem<float>& p);
void run_avx512(const Problem<double>& p);
void run_avx2(const Problem<float>& p);
void run_avx2(const Problem<double>& p);
void run_scalar(const Problem<float>& p);
void run_scalar(const Problem<double>& p);

// Runs p on the ISA in use, exactly as the matmul kernel would (same K = 0 and
// batch-folding handling), for kernels that call GEMM from their own C++ loops
// (the recurrent layers, rnn_loop.cpp). May throw std::bad_alloc.
void run(const Problem<float>& p);
void run(const Problem<double>& p);

}  // namespace kiln::cpu::gemm
