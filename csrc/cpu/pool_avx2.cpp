// The pooling loops of pool_impl.h compiled with AVX2 flags (the build gives
// *_avx2.cpp files those flags); chosen at run time by pool_table().
#include "cpu/pool_impl.h"

namespace kiln::cpu {
PoolTable<float> pool_table_avx2(float) { return make_pool_table<float>(); }
PoolTable<double> pool_table_avx2(double) { return make_pool_table<double>(); }
}  // namespace kiln::cpu
