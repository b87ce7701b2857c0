// CPU caching allocator installed as NumPy's memory handler (see allocator.cpp).
#pragma once
#include <pybind11/pybind11.h>

#include <cstddef>
#include <cstdlib>

namespace kiln::cpu {
void init_numpy();                 // import NumPy's C API; called once at module init
bool install_numpy_allocator();    // route NumPy allocations of this context through the pool
pybind11::dict allocator_stats();  // allocated/peak/cached bytes, hits, misses
void empty_cache();                // give cached blocks back to the system
void reset_peak_stats();

// Memory for a large buffer (freed with std::free), 64-byte aligned. From kHugeMin bytes on
// it is 2 MiB aligned and advised for transparent huge pages, as NumPy's own allocator does
// for arrays of 4 MiB and more (the handler above replaces that allocator, so it must do the
// same): a GEMM streaming a 16 MiB operand through 4 KiB pages misses the TLB on most rows.
constexpr size_t kHugeMin = size_t(2) << 20;
void* alloc_large(size_t bytes);

// A grow-only buffer, such as a per-thread workspace: get(bytes) returns at least `bytes`
// (whole pages; whole huge pages from kHugeMin on), reallocating only to grow, without
// keeping the contents; null when the allocation fails.
struct GrowBuffer {
  void* ptr = nullptr;
  size_t cap = 0;
  void* get(size_t bytes);
  GrowBuffer() = default;
  GrowBuffer(const GrowBuffer&) = delete;
  GrowBuffer& operator=(const GrowBuffer&) = delete;
  ~GrowBuffer() { std::free(ptr); }
};
}  // namespace kiln::cpu
