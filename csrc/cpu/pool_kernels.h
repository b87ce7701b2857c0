// Internal interface between the pooling drivers (pool.cpp: checks, ISA choice) and their
// loops (pool_impl.h, compiled per ISA in pool.cpp, pool_avx2.cpp, pool_avx512.cpp).
// Every array is viewed as P planes (the leading dims) of (H, W) input / (OH, OW) output.
#pragma once
#include <cstdint>

namespace kiln::cpu {

template <class T>
struct PoolArgs {
  const T* x = nullptr;   // forward input (P, H, W), or backward grad (P, OH, OW)
  T* y = nullptr;         // forward output (P, OH, OW), or backward grad_input (P, H, W)
  int64_t* idx = nullptr;  // max_pool2d: flat h * W + w of each output's max (-1: empty window)
  const int64_t* cidx = nullptr;  // max_pool2d_backward: the forward's indices
  int64_t P = 0, H = 0, W = 0, OH = 0, OW = 0;
  int64_t kH = 1, kW = 1, sH = 1, sW = 1, pH = 0, pW = 0, dH = 1, dW = 1;
  bool count_include_pad = true;
  int64_t divisor = 0;  // avg_pool2d divisor_override; 0 = none
};

template <class T>
struct PoolTable {
  void (*max_pool2d)(const PoolArgs<T>&) = nullptr;
  void (*max_pool2d_backward)(const PoolArgs<T>&) = nullptr;
  void (*avg_pool2d)(const PoolArgs<T>&) = nullptr;
  void (*avg_pool2d_backward)(const PoolArgs<T>&) = nullptr;
  void (*adaptive_avg_pool2d)(const PoolArgs<T>&) = nullptr;
  void (*adaptive_avg_pool2d_backward)(const PoolArgs<T>&) = nullptr;
};

PoolTable<float> pool_table_base(float);
PoolTable<double> pool_table_base(double);
PoolTable<float> pool_table_avx2(float);
PoolTable<double> pool_table_avx2(double);
PoolTable<float> pool_table_avx512(float);
PoolTable<double> pool_table_avx512(double);
template <class T>
PoolTable<T> pool_table();  // by kiln::cpu::isa()

}  // namespace kiln::cpu
