// matmul / matmul_naive: argument checks, the run-time ISA dispatch, and the
// pieces of the GEMM machinery that must exist once per process (workspace,
// cache-derived blocking, thread count policy).
//
// matmul computes out[b] = act(op(a[b]) @ op(b[b]) + bias) (see kernels.h);
// the blocked, packed, multi-threaded algorithm is in gemm_driver.h and is
// compiled per ISA in gemm_avx512.cpp / gemm_avx2.cpp / gemm_scalar.cpp.
// matmul_naive is the textbook i-j-k loop, the yardstick for "x times faster
// than naive" in the benchmarks, so it is kept deliberately plain.
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "cpu/allocator.h"
#include "cpu/gemm.h"
#include "cpu/gemm_driver.h"
#include "cpu/isa.h"
#include "cpu/kernels.h"

namespace kiln::cpu {
namespace gemm {

namespace {
struct CacheSizes {
  int64_t l1, l2;
};
CacheSizes cache_sizes() {
  static const CacheSizes cs = [] {
    long l1 = sysconf(_SC_LEVEL1_DCACHE_SIZE), l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
    // Fallbacks (sysconf may report 0 or -1 in containers / on other libcs):
    // 32 KiB L1d and 1 MiB L2 are at or below any AVX-512-era x86 core.
    if (l1 < 16 * 1024 || l1 > 1024 * 1024) l1 = 32 * 1024;
    if (l2 < 128 * 1024 || l2 > 64 * 1024 * 1024) l2 = 1024 * 1024;
    return CacheSizes{l1, l2};
  }();
  return cs;
}

// Grow-only per-thread buffers. OpenMP reuses its worker threads, so after the
// first call of a given size nothing is allocated.
thread_local GrowBuffer t_ws[3];
}  // namespace

void* workspace(int slot, size_t bytes) { return t_ws[slot].get(bytes); }

Blocking blocking_for(int mr, int nr, size_t elem) {
  const CacheSizes cs = cache_sizes();
  const int64_t e = int64_t(elem);
  // The MR x kc A micro-panel takes at most ~half of L1; the rest holds the
  // B micro-panel lines streaming through and the C tile.
  int64_t kc = cs.l1 / 2 / (mr * e);
  kc = imax(64, imin(512, kc / 8 * 8));
  // The kc x nb packed B block takes about half of L2.
  int64_t nb = cs.l2 / 2 / (kc * e);
  nb = imax(nr, nb / nr * nr);
  // The mb x kc packed A block: a few MiB, streamed from L3.
  int64_t mb = (4 << 20) / (kc * e);
  mb = imax(mr, mb / mr * mr);
  return Blocking{kc, nb, mb};
}

int threads_for(double flops) {
  // An OpenMP fork/join costs a few microseconds; give each thread at least
  // ~1 MFLOP (~10 us) of work.
  const double per_thread = 1e6;
  const int most = omp_get_max_threads();
  if (flops < 2 * per_thread) return 1;
  return int(imin(most, int64_t(flops / per_thread)));
}

}  // namespace gemm

namespace {
using gemm::Act;

Act parse_activation(const std::string& s) {
  if (s == "none") return Act::none;
  if (s == "relu") return Act::relu;
  if (s == "gelu") return Act::gelu;
  if (s == "gelu_tanh") return Act::gelu_tanh;
  fail_value("matmul: unknown activation '" + s + "' (expected none, relu, gelu, gelu_tanh)");
}

bool overlaps(const py::array& x, const py::array& y) {
  const char* x0 = static_cast<const char*>(x.data());
  const char* y0 = static_cast<const char*>(y.data());
  const py::ssize_t nx = x.nbytes(), ny = y.nbytes();
  return nx > 0 && ny > 0 && x0 < y0 + ny && y0 < x0 + nx;
}

// K = 0: the product is all zeros, so out = act(bias) row by row (act(0) = 0).
template <class T>
void fill_epilogue(const gemm::Problem<T>& p) {
  for (int64_t bi = 0; bi < p.batch; ++bi)
    for (int64_t i = 0; i < p.M; ++i) {
      T* row = p.c + bi * p.c_bstride + i * p.N;
      for (int64_t j = 0; j < p.N; ++j) {
        const T x = p.bias ? p.bias[j] : T(0);
        row[j] = p.act == Act::relu && x < T(0) ? T(0) : x;
      }
      gemm::act_row(row, int(p.N), p.act);
    }
}

template <class T>
void dispatch(gemm::Problem<T> p) {
  if (p.batch == 0 || p.M == 0 || p.N == 0) return;
  if (p.K == 0) return fill_epilogue(p);
  // b shared by the whole batch and a row-major: the batch is just more rows
  // of one GEMM (the Linear-layer case), which blocks and threads better.
  if (p.batch > 1 && p.b_bstride == 0 && !p.trans_a && p.a_bstride == p.M * p.K) {
    p.M *= p.batch;
    p.batch = 1;
  }
  switch (isa()) {
    case Isa::avx512: return gemm::run_avx512(p);
    case Isa::avx2: return gemm::run_avx2(p);
    default: return gemm::run_scalar(p);
  }
}

// The GIL is released around products long enough for another Python thread to use
// it: releasing and taking it back costs ~0.1-0.2 us, a tenth of a small product's call.
template <class T>
void run_maybe_nogil(const gemm::Problem<T>& p) {
  const double flops = 2.0 * double(p.batch) * double(p.M) * double(p.N) * double(p.K);
  if (flops < 2e5) return dispatch(p);
  py::gil_scoped_release nogil;
  dispatch(p);
}
}  // namespace

namespace gemm {
void run(const Problem<float>& p) { dispatch(p); }
void run(const Problem<double>& p) { dispatch(p); }
}  // namespace gemm

namespace {
// matmul and matmul_relu_backward: the checks, then one GEMM. mask (or nullptr): the
// array whose sign masks the product, out's shape.
void gemm_call(const char* op, const Arr& a, const Arr& b, Arr& out, bool trans_a, bool trans_b,
               const OptArr& bias, Act act, const Arr* mask) {
  check_float(a, op, "a");
  check_same_dtype(a, b, op, "a", "b");
  check_same_dtype(a, out, op, "a", "out");
  if (bias) check_same_dtype(a, *bias, op, "a", "bias");
  check_input(a, op, "a");
  check_input(b, op, "b");
  check_output(out, op, "out");
  if (bias) check_input(*bias, op, "bias");
  for (const auto& [x, name] : {std::pair<const Arr&, const char*>{a, "a"}, {b, "b"}, {out, "out"}})
    if (x.ndim() != 2 && x.ndim() != 3)
      fail_value(std::string(op) + ": " + name + " of shape " + shape_str(x) +
                 " must be 2-D or 3-D");

  const int da = int(a.ndim()) - 2, db = int(b.ndim()) - 2, dc = int(out.ndim()) - 2;
  const int64_t Ba = da ? a.shape(0) : 1, Bb = db ? b.shape(0) : 1, B = dc ? out.shape(0) : 1;
  const int64_t M = trans_a ? a.shape(da + 1) : a.shape(da);
  const int64_t Ka = trans_a ? a.shape(da) : a.shape(da + 1);
  const int64_t Kb = trans_b ? b.shape(db + 1) : b.shape(db);
  const int64_t N = trans_b ? b.shape(db) : b.shape(db + 1);
  // Messages are built only on failure: this function is on the hot path of small matmuls.
  auto sa = [&] { return "a of shape " + shape_str(a); };
  auto sb = [&] { return "b of shape " + shape_str(b); };
  auto so = [&] { return "out of shape " + shape_str(out); };
  if (Ka != Kb)
    fail_value(std::string(op) + ": inner dimensions differ: " + sa() +
               " (K=" + std::to_string(Ka) + ") vs " + sb() + " (K=" + std::to_string(Kb) + ")" +
               (trans_a || trans_b ? std::string(" with trans_a=") + (trans_a ? "True" : "False") +
                                         ", trans_b=" + (trans_b ? "True" : "False")
                                   : ""));
  if ((Ba != 1 && Ba != B) || (Bb != 1 && Bb != B))
    fail_value(std::string(op) + ": batch dimensions of " + sa() + " and " + sb() +
               " must each be 1 or the batch of " + so() + " (" + std::to_string(B) + ")");
  if (out.shape(dc) != M || out.shape(dc + 1) != N)
    fail_value(std::string(op) + ": " + so() + " does not match the product of " + sa() +
               " and " + sb() + ": expected (" + (dc ? std::to_string(B) + ", " : "") +
               std::to_string(M) + ", " + std::to_string(N) + ")");
  if (bias && (bias->ndim() != 1 || bias->shape(0) != N))
    fail_value(std::string(op) + ": bias of shape " + shape_str(*bias) + " must be (" +
               std::to_string(N) + ",) for " + so());
  if (mask) {
    check_same_dtype(a, *mask, op, "a", "x");
    check_input(*mask, op, "x");
    if (mask->ndim() != out.ndim() ||
        !std::equal(out.shape(), out.shape() + out.ndim(), mask->shape()))
      fail_value(std::string(op) + ": x of shape " + shape_str(*mask) + " must have the shape of " +
                 so());
  }
  if (overlaps(out, a) || overlaps(out, b) || (bias && overlaps(out, *bias)) ||
      (mask && overlaps(out, *mask)))
    fail_value(std::string(op) + ": " + so() + " overlaps an input; it must be a separate array");

  dispatch_float(a, op, "a", [&](auto tag) {
    using T = decltype(tag);
    gemm::Problem<T> p{cdata<T>(a), cdata<T>(b), data<T>(out), bias ? cdata<T>(*bias) : nullptr,
                       B, M, N, Ka, Ba == 1 ? 0 : M * Ka, Bb == 1 ? 0 : Ka * N, M * N,
                       trans_a, trans_b, act, mask ? cdata<T>(*mask) : nullptr};
    run_maybe_nogil(p);
  });
}
}  // namespace

void matmul(const Arr& a, const Arr& b, Arr out, bool trans_a, bool trans_b, const OptArr& bias,
            const std::string& activation) {
  gemm_call("matmul", a, b, out, trans_a, trans_b, bias, parse_activation(activation), nullptr);
}

void matmul_relu_backward(const Arr& a, const Arr& b, Arr out, bool trans_a, bool trans_b,
                          const Arr& x) {
  gemm_call("matmul_relu_backward", a, b, out, trans_a, trans_b, std::nullopt, Act::none, &x);
}

namespace {
// The reference loop: i-j-k order, one accumulator, no blocking. Vectorizing
// it would make the "speedup vs naive" figure meaningless, so it is off.
template <class T>
__attribute__((optimize("no-tree-vectorize"))) void naive_loop(const T* a, const T* b, T* c,
                                                               int64_t M, int64_t N, int64_t K) {
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      T s = T(0);
      for (int64_t k = 0; k < K; ++k) s += a[i * K + k] * b[k * N + j];
      c[i * N + j] = s;
    }
}
}  // namespace

void matmul_naive(const Arr& a, const Arr& b, Arr out) {
  const char* op = "matmul_naive";
  check_float(a, op, "a");
  check_same_dtype(a, b, op, "a", "b");
  check_same_dtype(a, out, op, "a", "out");
  check_input(a, op, "a");
  check_input(b, op, "b");
  check_output(out, op, "out");
  for (const auto& [x, name] : {std::pair<const Arr&, const char*>{a, "a"}, {b, "b"}, {out, "out"}})
    if (x.ndim() != 2)
      fail_value(std::string(op) + ": " + name + " of shape " + shape_str(x) + " must be 2-D");
  const int64_t M = a.shape(0), K = a.shape(1), N = b.shape(1);
  if (b.shape(0) != K)
    fail_value(std::string(op) + ": inner dimensions differ: a of shape " + shape_str(a) + " (K=" +
               std::to_string(K) + ") vs b of shape " + shape_str(b) + " (K=" +
               std::to_string(b.shape(0)) + ")");
  if (out.shape(0) != M || out.shape(1) != N)
    fail_value(std::string(op) + ": out of shape " + shape_str(out) + " must be (" +
               std::to_string(M) + ", " + std::to_string(N) + ")");
  if (overlaps(out, a) || overlaps(out, b))
    fail_value(std::string(op) + ": out of shape " + shape_str(out) + " overlaps an input");
  dispatch_float(a, op, "a", [&](auto tag) {
    using T = decltype(tag);
    const T* pa = cdata<T>(a);
    const T* pb = cdata<T>(b);
    T* pc = data<T>(out);
    py::gil_scoped_release nogil;
    naive_loop(pa, pb, pc, M, N, K);
  });
}

}  // namespace kiln::cpu
