// Shared pieces of the fused attention drivers (attention.cpp): tile sizes, the call's
// geometry, per-thread scratch, the tile-primitive table for the running ISA, and the scalar
// tile helpers (mask, causal mask, dropout factors), which touch jn * n elements per tile
// while the GEMMs around them do jn * n * D multiply-adds. Plain C++ (no -m flags needed).
#pragma once
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <type_traits>

#include "common/philox.h"
#include "cpu/attention.h"
#include "cpu/isa.h"

namespace kiln::cpu::attn {
constexpr int64_t kBr = 64;  // queries per tile (SIMD lanes; attention_tiles.cpp assumes <= 64)
constexpr int64_t kBc = 64;  // keys per tile
constexpr double kLog2e = 1.4426950408889634, kLn2 = 0.6931471805599453;

struct Geo {
  int64_t B, Hq, Hkv, L, S, D, Dv, g;
  const void* mask = nullptr;
  bool mask_bool = false;
  int64_t msb = 0, msh = 0, msl = 0, mss = 0;
  double scale = 1;
  bool causal = false;
  double p = 0;
  uint64_t seed = 0;
  int64_t nqb() const { return (L + kBr - 1) / kBr; }
  int64_t nkb() const { return (S + kBc - 1) / kBc; }
};

// Per-thread grow-only, 64-byte aligned scratch, reused across calls (never shrinks).
struct Scratch {
  void* ptr[8] = {};
  size_t cap[8] = {};
  ~Scratch() {
    for (void* p : ptr) std::free(p);
  }
};
inline thread_local Scratch t_scratch;
inline std::atomic<bool> g_oom{false};

template <class T>
T* scratch(int slot, int64_t n) {
  Scratch& s = t_scratch;
  const size_t bytes = size_t(std::max<int64_t>(n, 1)) * sizeof(T);
  if (bytes > s.cap[slot]) {
    std::free(s.ptr[slot]);
    const size_t want = (bytes + 4095) / 4096 * 4096;
    s.ptr[slot] = std::aligned_alloc(64, want);
    s.cap[slot] = s.ptr[slot] ? want : 0;
    if (!s.ptr[slot]) g_oom = true;
  }
  return static_cast<T*>(s.ptr[slot]);
}

template <class T>
const Ops<T>& ops_for() {
  if constexpr (std::is_same_v<T, float>)
    if (isa() == Isa::avx512) return ops_avx512_f32();
  return ops_portable<T>();
}

// ---- tile helpers (scalar: they touch jn * n elements, the GEMMs jn * n * D) -------------
template <class T>
void apply_mask(const Geo& G, T* st, int64_t b, int64_t h, int64_t i0, int64_t n, int64_t j0,
                int64_t jn, int64_t br = kBr) {
  const int64_t off0 = b * G.msb + h * G.msh + j0 * G.mss;
  for (int64_t ii = 0; ii < n; ++ii) {
    const int64_t off = off0 + (i0 + ii) * G.msl;
    if (G.mask_bool) {
      const bool* row = static_cast<const bool*>(G.mask) + off;
      for (int64_t jj = 0; jj < jn; ++jj)
        if (!row[jj * G.mss]) st[jj * br + ii] = -std::numeric_limits<T>::infinity();
    } else {
      const T* row = static_cast<const T*>(G.mask) + off;
      for (int64_t jj = 0; jj < jn; ++jj) st[jj * br + ii] += row[jj * G.mss] * T(kLog2e);
    }
  }
}

template <class T>
void apply_causal(T* st, int64_t i0, int64_t j0, int64_t jn, int64_t br = kBr) {
  if (j0 + jn - 1 <= i0) return;  // tile entirely on or below the diagonal
  for (int64_t jj = 0; jj < jn; ++jj)
    for (int64_t ii = 0; ii < br; ++ii)
      if (j0 + jj > i0 + ii) st[jj * br + ii] = -std::numeric_limits<T>::infinity();
}

// z[jj * br + ii] = keep ? 1 / (1 - p) : 0 for the tile's valid lanes, 0 for padded ones.
template <class T>
void dropout_factors(const Geo& G, T* z, int64_t bh, int64_t i0, int64_t n, int64_t j0,
                     int64_t jn, int64_t br = kBr) {
  const float p = float(G.p);
  const T fac = G.p < 1 ? T(1.0 / (1.0 - G.p)) : T(0);
  for (int64_t ii = 0; ii < br; ++ii) {
    if (ii >= n) {
      for (int64_t jj = 0; jj < jn; ++jj) z[jj * br + ii] = 0;
      continue;
    }
    const uint64_t base = uint64_t((bh * G.L + i0 + ii) * G.S + j0);
    uint32_t w[4];
    uint64_t blk = ~uint64_t(0);
    for (int64_t jj = 0; jj < jn; ++jj) {
      const uint64_t idx = base + uint64_t(jj);
      if ((idx >> 2) != blk) philox4x32(G.seed, blk = idx >> 2, w);
      const float u = float(w[idx & 3] >> 8) * (1.0f / 16777216.0f);
      z[jj * br + ii] = u >= p ? fac : T(0);
    }
  }
}

}  // namespace kiln::cpu::attn
