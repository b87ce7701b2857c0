// The CPU caching allocator. NumPy lets an extension install a memory handler
// (PyDataMem_SetHandler, NumPy >= 1.22); kiln installs this one at import so
// every array kiln creates -- op outputs, temporaries inside NumPy ufuncs,
// kernel outputs -- draws from size-binned free lists instead of fresh pages.
// On these machines the first touch of a fresh 4 KiB page costs ~1.4 us, so a
// training step that frees and re-faults its temporaries loses milliseconds.
//
// Blocks of >= kMinPooled bytes are rounded up to a bin (4 bins per power of
// two, so <= 25% slack) and, when freed, go back to their bin's free list as
// long as the cache stays under its limit (KILN_CPU_CACHE_MB, default 2048);
// smaller ones go straight to malloc, which already recycles them without
// page faults. Every block carries a 64-byte header (its bin size) so realloc
// and free know where it belongs; user data stays 64-byte aligned.
#include "cpu/allocator.h"

#include <numpy/arrayobject.h>
#include <sys/mman.h>

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace kiln::cpu {
namespace {
constexpr size_t kHeader = 64;
constexpr size_t kMinPooled = 16384;
constexpr uint64_t kMagicPooled = 0x6b696c6e706f6f6cULL;  // "kilnpool"
constexpr uint64_t kMagicPlain = 0x6b696c6e706c6e21ULL;

struct Header {
  uint64_t magic;
  uint64_t bin;  // rounded block size (pooled) or requested size (plain)
};

struct Pool {
  std::mutex mu;
  std::unordered_map<size_t, std::vector<void*>> free_lists;
  size_t cached = 0, in_use = 0, peak = 0, limit = 0;
  uint64_t hits = 0, misses = 0;
  Pool() {
    size_t mb = 2048;
    if (const char* e = std::getenv("KILN_CPU_CACHE_MB")) mb = std::strtoull(e, nullptr, 10);
    limit = mb << 20;
  }
};
Pool& pool() {
  static Pool* p = new Pool();  // never destroyed: arrays may be freed during interpreter exit
  return *p;
}

size_t bin_of(size_t n) {
  // round n up to one of 4 evenly spaced sizes per power of two
  size_t p = size_t(1) << (63 - __builtin_clzll(n));
  size_t step = p / 4;
  return (n + step - 1) / step * step;
}

void* do_malloc(size_t n, bool zero) {
  if (n == 0) n = 1;
  Header* h;
  if (n < kMinPooled) {
    h = static_cast<Header*>(zero ? std::calloc(1, n + kHeader) : std::malloc(n + kHeader));
    if (!h) return nullptr;
    h->magic = kMagicPlain;
    h->bin = n;
    return reinterpret_cast<char*>(h) + kHeader;
  }
  size_t bin = bin_of(n);
  Pool& P = pool();
  void* block = nullptr;
  {
    std::lock_guard<std::mutex> lock(P.mu);
    auto it = P.free_lists.find(bin);
    if (it != P.free_lists.end() && !it->second.empty()) {
      block = it->second.back();
      it->second.pop_back();
      P.cached -= bin;
      ++P.hits;
    } else {
      ++P.misses;
    }
    P.in_use += bin;
    if (P.in_use > P.peak) P.peak = P.in_use;
  }
  if (!block) {
    block = alloc_large(bin + kHeader);
    if (!block) {
      std::lock_guard<std::mutex> lock(P.mu);
      P.in_use -= bin;
      return nullptr;
    }
  }
  h = static_cast<Header*>(block);
  h->magic = kMagicPooled;
  h->bin = bin;
  char* user = static_cast<char*>(block) + kHeader;
  if (zero) std::memset(user, 0, n);
  return user;
}

void do_free(void* user) {
  if (!user) return;
  Header* h = reinterpret_cast<Header*>(static_cast<char*>(user) - kHeader);
  if (h->magic == kMagicPlain) {
    std::free(h);
    return;
  }
  Pool& P = pool();
  const size_t bin = h->bin;
  {
    std::lock_guard<std::mutex> lock(P.mu);
    P.in_use -= bin;
    if (P.cached + bin <= P.limit) {
      P.free_lists[bin].push_back(h);
      P.cached += bin;
      return;
    }
  }
  std::free(h);
}

size_t usable(void* user) {
  Header* h = reinterpret_cast<Header*>(static_cast<char*>(user) - kHeader);
  return h->bin;
}

void* h_malloc(void*, size_t n) { return do_malloc(n, false); }
void* h_calloc(void*, size_t nelem, size_t elsize) { return do_malloc(nelem * elsize, true); }
void h_free(void*, void* p, size_t) { do_free(p); }
void* h_realloc(void*, void* p, size_t n) {
  if (!p) return do_malloc(n, false);
  size_t old = usable(p);
  if (n <= old && n >= old / 2) return p;
  void* q = do_malloc(n, false);
  if (!q) return nullptr;
  std::memcpy(q, p, old < n ? old : n);
  do_free(p);
  return q;
}

}  // namespace

void* alloc_large(size_t bytes) {
  void* p = nullptr;
  if (bytes < kHugeMin) return posix_memalign(&p, 64, bytes) == 0 ? p : nullptr;
  if (posix_memalign(&p, kHugeMin, bytes) != 0) return nullptr;
  // Advice only: where THP is off ("never") or the kernel lacks it, this fails harmlessly.
  madvise(p, (bytes + 4095) / 4096 * 4096, MADV_HUGEPAGE);
  return p;
}

void* GrowBuffer::get(size_t bytes) {
  if (bytes <= cap) return ptr;
  std::free(ptr);
  const size_t page = bytes >= kHugeMin ? kHugeMin : 4096;
  const size_t want = (bytes + page - 1) / page * page;
  ptr = alloc_large(want);
  cap = ptr ? want : 0;
  return ptr;
}

namespace {
PyDataMem_Handler g_handler = {
    "kiln_caching_allocator", 1, {nullptr, h_malloc, h_calloc, h_realloc, h_free}};
}  // namespace

bool install_numpy_allocator() {
  static PyObject* capsule = nullptr;  // kept alive for the life of the process
  if (!capsule) {
    capsule = PyCapsule_New(&g_handler, "mem_handler", nullptr);
    if (!capsule) throw pybind11::error_already_set();
  }
  PyObject* old = PyDataMem_SetHandler(capsule);
  if (!old) throw pybind11::error_already_set();
  Py_DECREF(old);
  return true;
}

pybind11::dict allocator_stats() {
  Pool& P = pool();
  std::lock_guard<std::mutex> lock(P.mu);
  pybind11::dict d;
  d["allocated_bytes"] = P.in_use;
  d["peak_allocated_bytes"] = P.peak;
  d["cached_bytes"] = P.cached;
  d["cache_limit_bytes"] = P.limit;
  d["hits"] = P.hits;
  d["misses"] = P.misses;
  return d;
}

void empty_cache() {
  Pool& P = pool();
  std::lock_guard<std::mutex> lock(P.mu);
  for (auto& kv : P.free_lists)
    for (void* b : kv.second) std::free(b);
  P.free_lists.clear();
  P.cached = 0;
}

void reset_peak_stats() {
  Pool& P = pool();
  std::lock_guard<std::mutex> lock(P.mu);
  P.peak = P.in_use;
}

void init_numpy() {
  if (_import_array() < 0) throw pybind11::error_already_set();
}
}  // namespace kiln::cpu
