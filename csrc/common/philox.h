// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3",
// SC 2011): a counter-based generator. Random bits are a pure function of
// (seed, element index), so a mask is the same for any thread count, any
// tiling and any backend, and a backward pass regenerates the forward's mask
// instead of storing it.
//
// kiln's convention (dropout, attention dropout, every backend):
//   the 32-bit word for element `idx` of a call seeded with `seed` is word
//   (idx & 3) of philox4x32(counter = {lo32(idx >> 2), hi32(idx >> 2), 0, 0},
//   key = {lo32(seed), hi32(seed)});
//   its uniform in [0, 1) is (word >> 8) * 2^-24, and the element is dropped
//   when that uniform is < p (kept with probability 1 - p, scaled by 1/(1-p)).
// `idx` is the element's row-major index in the logical tensor (for attention:
// ((b * H + h) * L + i) * S + j). The Python side draws `seed` from kiln's
// global generator (kiln.manual_seed), one seed per call.
#pragma once
#include <array>
#include <cstdint>

#if defined(__CUDACC__)
#define KILN_HD __host__ __device__ __forceinline__
#else
#define KILN_HD inline
#endif

namespace kiln {

KILN_HD void philox_round(uint32_t c[4], const uint32_t k[2]) {
  constexpr uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u;
  const uint64_t p0 = uint64_t(M0) * c[0], p1 = uint64_t(M1) * c[2];
  const uint32_t h0 = uint32_t(p0 >> 32), l0 = uint32_t(p0);
  const uint32_t h1 = uint32_t(p1 >> 32), l1 = uint32_t(p1);
  const uint32_t n0 = h1 ^ c[1] ^ k[0], n2 = h0 ^ c[3] ^ k[1];
  c[0] = n0;
  c[1] = l1;
  c[2] = n2;
  c[3] = l0;
}

// The four words of block `block` (= idx >> 2) for `seed`; out[j] serves idx = 4 * block + j.
KILN_HD void philox4x32(uint64_t seed, uint64_t block, uint32_t out[4]) {
  constexpr uint32_t W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
  uint32_t k[2] = {uint32_t(seed), uint32_t(seed >> 32)};
  uint32_t c[4] = {uint32_t(block), uint32_t(block >> 32), 0u, 0u};
  for (int r = 0; r < 10; ++r) {
    if (r) {
      k[0] += W0;
      k[1] += W1;
    }
    philox_round(c, k);
  }
  for (int j = 0; j < 4; ++j) out[j] = c[j];
}

KILN_HD uint32_t philox_word(uint64_t seed, uint64_t idx) {
  uint32_t w[4];
  philox4x32(seed, idx >> 2, w);
  return w[idx & 3];
}

// Uniform in [0, 1) with 24 random bits (exact in float32).
KILN_HD float philox_uniform(uint64_t seed, uint64_t idx) {
  return float(philox_word(seed, idx) >> 8) * (1.0f / 16777216.0f);
}

// Dropout's keep decision for element idx (true = kept).
KILN_HD bool philox_keep(uint64_t seed, uint64_t idx, float p) {
  return philox_uniform(seed, idx) >= p;
}

}  // namespace kiln
