// The optimizer element loops of optim_loops.h compiled with AVX2 + FMA flags (the build gives
// *_avx2.cpp files -mavx2 -mfma); optim.cpp calls them only when isa() is avx2.
#include "cpu/optim_loops.h"

namespace kiln::cpu::optim {
const Table& table_avx2() {
  static const Table t = make_table();
  return t;
}
}  // namespace kiln::cpu::optim
