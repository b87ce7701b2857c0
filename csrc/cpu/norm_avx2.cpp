// The normalization / dropout loops of norm_impl.h compiled with AVX2 flags (the
// build gives *_avx2.cpp files those flags); chosen at run time by norm_table().
#include "cpu/norm_chan_impl.h"

namespace kiln::cpu {
NormTable<float> norm_table_avx2(float) { return make_norm_table<float>(); }
NormTable<double> norm_table_avx2(double) { return make_norm_table<double>(); }
}  // namespace kiln::cpu
