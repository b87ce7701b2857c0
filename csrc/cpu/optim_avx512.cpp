// The optimizer element loops of optim_loops.h compiled with AVX-512 flags (the build gives
// *_avx512.cpp files -mavx512f -mfma ...); optim.cpp calls them only when isa() is avx512.
#include "cpu/optim_loops.h"

namespace kiln::cpu::optim {
const Table& table_avx512() {
  static const Table t = make_table();
  return t;
}
}  // namespace kiln::cpu::optim
