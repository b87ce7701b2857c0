// OpenMP thread count for all CPU kernels (kiln.set_num_threads).
#include <omp.h>

#include "cpu/kernels.h"

namespace kiln::cpu {
void set_num_threads(int n) {
  if (n < 1) fail_value("set_num_threads: n must be >= 1, got " + std::to_string(n));
  omp_set_num_threads(n);
}
int get_num_threads() { return omp_get_max_threads(); }
}  // namespace kiln::cpu
