// Internal interface between the normalization / dropout drivers (norm.cpp, norm_batch.cpp,
// dropout.cpp: argument checks, workspace, ISA choice) and their loops (norm_impl.h,
// compiled once per ISA in norm.cpp, norm_avx2.cpp, norm_avx512.cpp). The drivers fill one
// of the plain argument structs below and call the function pointer from the table of the
// ISA in use.
#pragma once
#include <cstdint>

namespace kiln::cpu {

// Below this many elements one thread does the work (waking threads costs ~1-2 us).
constexpr int64_t kNormGrain = 32768;
// layer_norm_backward: rows are summed into at most this many partials (fixed, so the
// weight / bias gradients do not depend on the thread count).
constexpr int64_t kLnBlocks = 64;
// dropout: 64-element groups per task.
constexpr int64_t kDropoutGroupsPerTask = 256;

// layer_norm over rows of `cols` elements; group_norm and batch_norm reuse the fields.
template <class T>
struct NormArgs {
  const T* x = nullptr;
  const T* w = nullptr;  // (cols,) or null
  const T* b = nullptr;
  T* y = nullptr;
  T* mean = nullptr;  // (rows,)
  T* rstd = nullptr;
  int64_t rows = 0, cols = 0;
  double eps = 0;
};

template <class T>
struct NormBwdArgs {
  const T* g = nullptr;
  const T* x = nullptr;
  const T* mean = nullptr;
  const T* rstd = nullptr;
  const T* w = nullptr;
  T* gx = nullptr;  // each of gx / gw / gb may be null (not wanted)
  T* gw = nullptr;
  T* gb = nullptr;
  double* work = nullptr;  // layer_norm: kLnBlocks * 2 * cols doubles
  int64_t rows = 0, cols = 0;
};

template <class T>
struct DropoutArgs {
  const T* x = nullptr;
  T* y = nullptr;
  int64_t n = 0;
  int64_t inner = 1;  // elements sharing one draw (feature dropout); divides n
  uint64_t seed = 0;
  double p = 0;  // 0 < p < 1 (the driver handles 0 and 1)
};

// batch_norm / group_norm: x viewed as (N, C, S). batch_norm: mean / rstd are (C,) (the
// batch statistics in training, the running ones in eval); group_norm: (N, G).
template <class T>
struct ChanArgs {
  const T* x = nullptr;
  const T* w = nullptr;  // (C,) or null
  const T* b = nullptr;
  T* y = nullptr;
  T* mean = nullptr;
  T* rstd = nullptr;
  T* running_mean = nullptr;  // batch_norm, (C,) or null
  T* running_var = nullptr;
  int64_t N = 0, C = 0, S = 0, G = 1;
  double eps = 0, momentum = 0;
  bool training = true;
};

template <class T>
struct ChanBwdArgs {
  const T* g = nullptr;
  const T* x = nullptr;
  const T* mean = nullptr;
  const T* rstd = nullptr;
  const T* w = nullptr;
  T* gx = nullptr;  // each may be null
  T* gw = nullptr;
  T* gb = nullptr;
  double* work = nullptr;  // batch_norm: 2 C doubles; group_norm: 2 N C doubles
  int64_t N = 0, C = 0, S = 0, G = 1;
  bool training = true;
};

template <class T>
struct NormTable {
  void (*layer_norm)(const NormArgs<T>&) = nullptr;
  void (*layer_norm_backward)(const NormBwdArgs<T>&) = nullptr;
  void (*batch_norm)(const ChanArgs<T>&) = nullptr;
  void (*batch_norm_backward)(const ChanBwdArgs<T>&) = nullptr;
  void (*group_norm)(const ChanArgs<T>&) = nullptr;
  void (*group_norm_backward)(const ChanBwdArgs<T>&) = nullptr;
  void (*dropout)(const DropoutArgs<T>&) = nullptr;
};

// One table per ISA (norm.cpp: baseline; norm_avx2.cpp; norm_avx512.cpp), and the one in use.
NormTable<float> norm_table_base(float);
NormTable<double> norm_table_base(double);
NormTable<float> norm_table_avx2(float);
NormTable<double> norm_table_avx2(double);
NormTable<float> norm_table_avx512(float);
NormTable<double> norm_table_avx512(double);
template <class T>
NormTable<T> norm_table();  // by kiln::cpu::isa()
// Intrinsic AVX-512 dropout (dropout_avx512.cpp), the avx512 table's entry.
void dropout_avx512(const DropoutArgs<float>& a);
void dropout_avx512(const DropoutArgs<double>& a);
// A grow-only per-thread buffer of at least n doubles (norm.cpp), reused across calls.
double* norm_workspace(int64_t n);

}  // namespace kiln::cpu
