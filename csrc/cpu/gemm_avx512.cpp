// AVX-512 GEMM: the generic driver and micro-kernel of gemm_driver.h bound to
// 512-bit vectors. Tiles: fp32 14 x 32 (28 accumulators + 2 B vectors + 1
// broadcast = 31 of the 32 zmm registers; 28 FMAs per 2 loads + 14
// broadcasts per k step) and fp64 8 x 24 (24 accumulators + 3 B vectors).
// Measured here: fp32 14x32 and 8x48 tie; fp64 8x24 beats 14x16 by ~5% at
// 2048^3 (its kc x 8 A micro-panel allows kc = 384 in half of L1). Narrow,
// small and mid-sized fp32 products take other tiles (below: run_avx512). Edge
// columns use AVX-512 masked loads/stores, which never fault on the
// masked-off lanes.
// Compiled with -mavx512f/dq/bw/vl (CMakeLists.txt); only called when
// isa() == avx512.
#include <immintrin.h>

#include "cpu/gemm_dot_avx512.h"
#include "cpu/gemm_simd_avx512.h"

namespace kiln::cpu::gemm {
namespace {

using KernelF32 = MicroKernel<F32x16, 14, 2>;
using KernelF64 = MicroKernel<F64x8, 8, 3>;  // 8 x 24
// Narrow outputs (N <= one vector, e.g. a 10-class Linear head): the wide
// tiles would spend 2/3 or more of their FMAs on zero padding. One vector per
// row instead; the broadcasts then bound the loop (one load per FMA), which
// still runs ~1.7x faster than the wide tile on N = 10. Measured MR for
// 128x128.128x10: 8 and 16 best, 14 ~8% slower, 24 much slower (16 in-place
// row streams is where L1 stops coping).
using KernelF32N = MicroKernel<F32x16, 16, 1>;
using KernelF64N = MicroKernel<F64x8, 16, 1>;

// A 6 x 64 tile (24 accumulators, one whole 256-byte B row per k step: 4 loads + 6
// broadcasts per 24 FMAs against 2 + 14 per 28) for every product not large in both M and
// K, when N fills 64-wide panels as well as 32-wide ones. 14 x 32 keeps the large squares:
// 1024^3 2 threads -6.5%, 2048^3 -1% with 6 x 64. 1 thread, alternating in one process
// with the 14 x 32 build: 128x784x256 -1..+7%, 256^3 +3%, 512^3 +3%, 4096x512x2048
// +2..+4%, 1280x64x512 (trans_b) +7%; 2 threads: 128x784x256 +21%, 256^3 +7%,
// 1280x64x512 +4%, 512^3 -4%, 4096x512x2048 -1%.
// Small products (the whole k x N of B within 64 KiB, read in place: attention heads,
// batched 64^3, small Linear layers) go further: with few rows and columns to go round,
// the 14 x 32 tile's 14 in-place A row streams and its padding dominate (M = 64 runs as
// 4 x 14 + 8 rows, N = 48 as 32 + a packed, half-empty 16). 6 x 64 where N fills 64-wide
// panels as well as any, else 8 x 48 or 8 x 32, whichever pads N less. 1 thread,
// alternating with the 14 x 32 build and PyTorch, GFLOP/s 14x32 -> now (PyTorch): batched
// 64 x 64^3 86 -> 113 (96), 64 x 48^3 59 -> 110 (106), 64 x (64x64x48) 66 -> 112 (100),
// 64 x 32^3 70 -> 85 (90), 8 x (256x64x256) 77 -> 93 (84), 128^3 109 -> 119 (113),
// 1024x128x128 113 -> 127 (112); trans_a / trans_b alike (+6..+13%).
using KernelF32W = MicroKernel<F32x16, 6, 4>;
using KernelF32S48 = MicroKernel<F32x16, 8, 3>;
using KernelF32S32 = MicroKernel<F32x16, 8, 2>;

}  // namespace

void run_avx512(const Problem<float>& p) {
  if (dot_pays(p)) return run_dot<F32x16>(p);
  if (p.N <= KernelF32N::NR) return run_problem<KernelF32N>(p);
  const int64_t n64 = cdiv(p.N, 64) * 64, n48 = cdiv(p.N, 48) * 48, n32 = cdiv(p.N, 32) * 32;
  if (p.K * p.N * int64_t(sizeof(float)) <= 64 * 1024) {
    if (n64 <= n48 && n64 <= n32) return run_problem<KernelF32W>(p);
    if (n48 < n32) return run_problem<KernelF32S48>(p);
    return run_problem<KernelF32S32>(p);
  }
  if (n64 <= n32 && (p.M <= 512 || p.K <= 512)) return run_problem<KernelF32W>(p);
  run_problem<KernelF32>(p);
}
void run_avx512(const Problem<double>& p) {
  if (dot_pays(p)) return run_dot<F64x8>(p);
  if (p.N <= KernelF64N::NR) return run_problem<KernelF64N>(p);
  run_problem<KernelF64>(p);
}

}  // namespace kiln::cpu::gemm
