// The normalization / dropout loops of norm_impl.h compiled with AVX512 flags (the
// build gives *_avx512.cpp files those flags); chosen at run time by norm_table().
#include "cpu/norm_chan_impl.h"

namespace kiln::cpu {
template <class T>
NormTable<T> table() {
  NormTable<T> t = make_norm_table<T>();
  t.dropout = [](const DropoutArgs<T>& a) { dropout_avx512(a); };  // intrinsics (Philox x16)
  return t;
}
NormTable<float> norm_table_avx512(float) { return table<float>(); }
NormTable<double> norm_table_avx512(double) { return table<double>(); }
}  // namespace kiln::cpu
