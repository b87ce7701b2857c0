// CPU caching allocator installed as NumPy's memory handler (see allocator.cpp).
#pragma once
#include <pybind11/pybind11.h>

namespace kiln::cpu {
void init_numpy();                 // import NumPy's C API; called once at module init
bool install_numpy_allocator();    // route NumPy allocations of this context through the pool
pybind11::dict allocator_stats();  // allocated/peak/cached bytes, hits, misses
void empty_cache();                // give cached blocks back to the system
void reset_peak_stats();
}  // namespace kiln::cpu
