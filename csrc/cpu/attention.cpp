// Fused (flash-style) scaled-dot-product attention on the CPU, forward and backward.
//
//   q (B, Hq, L, D), k (B, Hkv, S, D), v (B, Hkv, S, Dv), Hq = g * Hkv (grouped-query
//   attention: query head h reads key/value head h / g, nothing is copied);
//   s_ij = scale * q_i . k_j + mask_ij (bool mask: False -> -inf), causal: j > i -> -inf
//   (top-left aligned, as torch); P = softmax_j(s); out = dropout(P) @ v; lse_i = log sum_j e^s_ij.
//
// Forward (one task = one (b, h, 64-query tile), threads over all tasks): the query tile is
// packed transposed and pre-scaled, then for each 64-key tile S^T = K_j Q^T is formed, the
// online softmax keeps a running max m and sum l per query (rescaling the output rows by
// alpha = e^(m_old - m_new)), and out += P V_j. Causal key tiles above the diagonal are never
// visited. Only out and lse are written: memory is O(T * D), never O(T^2).
//
// Backward (FlashAttention-2): a pre-pass packs Q^T (scaled), dO^T and D_i = rowsum(dO * O) per
// query tile, dO^T and D_i pre-multiplied by scale (done per unit by the thread that then sweeps
// it, so the packed tiles are still in its L2); then per key tile, over the query tiles
// (of every query head of the group; tiles 128 x 128 when not causal -- half the sweeps over
// the packed query tiles, which leave L2 at long T -- 64 x 64 when causal, less masked work):
//   P = exp(s - lse), dV_j += P~^T dO, dP~ = dO V_j^T, dS = P * (dP - D_i),
//   dK_j += scale dS^T Q, dQ += scale dS K_j            (P~ = P * keep / (1-p) under dropout)
// (the scale comes in through dO^T and D_i, and the exp and the dS step run in the store of
// their GEMMs when nothing -- mask, diagonal, dropout -- comes between).
// Non-causal, the key tiles of a unit go in groups of 4 per sweep over the query tiles (each
// packed query tile is read once per group, not once per key tile: at long T a head's packed
// query tiles leave L2, the group's K, V tiles and dK, dV accumulators stay).
// dK_j, dV_j are private to the task. dQ rows are shared by all key tiles of a head, so the
// threads own whole (b, kv-head) units when there are enough of them (dQ is then written
// without conflict and no extra memory); with fewer units than threads (e.g. B = H = 1) the
// key tiles of a unit are split over threads, each accumulating dQ into a private (g, L, D)
// buffer that is summed afterwards -- O(threads * T * D), cheaper than the second pass over
// query tiles (two more tile GEMMs per tile pair) that would avoid it.
//
// Dropout masks come from Philox (csrc/common/philox.h) at element index
// ((b * Hq + h) * L + i) * S + j, so backward regenerates the forward's mask exactly.
// Fully masked rows give out = 0, lse = -inf and zero gradients (as torch 2.13).
#include <omp.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "common/philox.h"
#include "cpu/attention_detail.h"
#include "cpu/kernels.h"

namespace kiln::cpu {
namespace {
using namespace attn;  // Ops, tile sizes, Geo, scratch, tile helpers: cpu/attention_detail.h

// ---- argument checks ------------------------------------------------------------------
void check4(const Arr& a, const char* op, const char* name) {
  check_input(a, op, name);
  if (a.ndim() != 4) fail_value(std::string(op) + ": " + describe(a, name) + " must be 4-d");
}

void expect(const Arr& a, const char* op, const char* name, std::initializer_list<int64_t> dims) {
  bool ok = a.ndim() == int64_t(dims.size());
  int i = 0;
  for (int64_t d : dims) ok = ok && a.shape(i++) == d;
  if (!ok) {
    std::string want = "(";
    for (int64_t d : dims) want += std::to_string(d) + ", ";
    fail_value(std::string(op) + ": " + describe(a, name) + " must have shape " +
               want.substr(0, want.size() - 2) + ")");
  }
}

Geo check_args(const char* op, const Arr& q, const Arr& k, const Arr& v, const OptArr& mask,
               double scale, bool causal, double p, uint64_t seed) {
  check_float(q, op, "q");
  check4(q, op, "q");
  check4(k, op, "k");
  check4(v, op, "v");
  check_same_dtype(q, k, op, "q", "k");
  check_same_dtype(q, v, op, "q", "v");
  Geo G;
  G.B = q.shape(0), G.Hq = q.shape(1), G.L = q.shape(2), G.D = q.shape(3);
  G.Hkv = k.shape(1), G.S = k.shape(2), G.Dv = v.shape(3);
  if (k.shape(0) != G.B || k.shape(3) != G.D || v.shape(0) != G.B || v.shape(1) != G.Hkv ||
      v.shape(2) != G.S)
    fail_value(std::string(op) + ": incompatible " + describe(q, "q") + ", " + describe(k, "k") +
               ", " + describe(v, "v") + " (want (B, Hq, L, D), (B, Hkv, S, D), (B, Hkv, S, Dv))");
  if (G.Hkv == 0 ? G.Hq != 0 : G.Hq % G.Hkv != 0)
    fail_value(std::string(op) + ": query heads " + std::to_string(G.Hq) +
               " must be a multiple of key/value heads " + std::to_string(G.Hkv));
  G.g = G.Hkv ? G.Hq / G.Hkv : 1;
  if (!(p >= 0 && p <= 1)) fail_value(std::string(op) + ": dropout_p must be in [0, 1]");
  G.scale = scale, G.causal = causal, G.p = p, G.seed = seed;
  if (mask) {
    const Arr& m = *mask;
    check4(m, op, "mask");
    const int64_t full[4] = {G.B, G.Hq, G.L, G.S};
    int64_t st[4], acc = 1;
    for (int i = 3; i >= 0; --i) {
      if (m.shape(i) != 1 && m.shape(i) != full[i])
        fail_value(std::string(op) + ": " + describe(m, "mask") + " does not broadcast to (" +
                   std::to_string(G.B) + ", " + std::to_string(G.Hq) + ", " +
                   std::to_string(G.L) + ", " + std::to_string(G.S) + ")");
      st[i] = m.shape(i) == 1 ? 0 : acc;
      acc *= m.shape(i);
    }
    G.msb = st[0], G.msh = st[1], G.msl = st[2], G.mss = st[3];
    G.mask_bool = dtype_of(m) == DType::b8;
    if (!G.mask_bool) check_same_dtype(q, m, op, "q", "mask");
    G.mask = m.data();
  }
  return G;
}

// ---- forward ----------------------------------------------------------------------------
template <class T>
void fwd_tile(const Geo& G, const Ops<T>& ops, const T* q, const T* k, const T* v, T* out,
              T* lse, int64_t bh, int64_t qb) {
  const int64_t D = G.D, Dv = G.Dv, b = bh / G.Hq, h = bh % G.Hq;
  const int64_t i0 = qb * kBr, n = std::min(kBr, G.L - i0);
  T* qt = scratch<T>(0, D * kBr);
  T* st = scratch<T>(1, kBc * kBr);
  T* stat = scratch<T>(2, 3 * kBr);
  T* z = G.p > 0 ? scratch<T>(3, kBc * kBr) : nullptr;
  if (g_oom) return;
  T *m = stat, *l = stat + kBr, *alpha = stat + 2 * kBr;
  const T* qh = q + (bh * G.L + i0) * D;
  const T sc = T(G.scale * kLog2e);
  ops.pack_t(qh, D, n, D, sc, qt, kBr);
  const int64_t hk = b * G.Hkv + h / G.g;
  const T* kh = k + hk * G.S * D;
  const T* vh = v + hk * G.S * Dv;
  T* o = out + (bh * G.L + i0) * Dv;
  for (int64_t ii = 0; ii < kBr; ++ii)
    m[ii] = -std::numeric_limits<T>::infinity(), l[ii] = 0;
  const int64_t jend = G.causal ? std::min(G.S, i0 + n) : G.S;
  for (int64_t j0 = 0; j0 < jend; j0 += kBc) {
    const int64_t jn = std::min(kBc, jend - j0);
    ops.gemm(jn, kBr, D, kh + j0 * D, D, 1, qt, kBr, st, kBr, false, nullptr);
    if (G.mask) apply_mask(G, st, b, h, i0, n, j0, jn);
    if (G.causal) apply_causal(st, i0, j0, jn);
    ops.softmax_step(st, jn, kBr, m, l, alpha);
    if (z) {
      dropout_factors(G, z, bh, i0, n, j0, jn);
      for (int64_t e = 0; e < jn * kBr; ++e) st[e] *= z[e];
    }
    // o = o * alpha + P V_j (the first tile overwrites o)
    ops.gemm(n, Dv, jn, st, 1, kBr, vh + j0 * Dv, Dv, o, Dv, j0 > 0, alpha);
  }
  if (jend == 0) std::memset(o, 0, sizeof(T) * size_t(n * Dv));
  T* lrow = lse + bh * G.L + i0;
  for (int64_t ii = 0; ii < n; ++ii) {
    const T inv = l[ii] == T(0) ? T(0) : T(1) / l[ii];  // fully masked row: 0, as torch
    for (int64_t d = 0; d < Dv; ++d) o[ii * Dv + d] *= inv;
    lrow[ii] = l[ii] == T(0) ? -std::numeric_limits<T>::infinity()
                             : T((double(m[ii]) + std::log2(double(l[ii]))) * kLn2);
  }
}

int threads_for(double flops) { return flops < 4e6 ? 1 : omp_get_max_threads(); }

template <class T>
void forward(const Geo& G, const T* q, const T* k, const T* v, T* out, T* lse) {
  const Ops<T>& ops = ops_for<T>();
  const int64_t nqb = G.nqb(), ntask = G.B * G.Hq * nqb;
  const int nt = threads_for(4.0 * double(G.B * G.Hq) * double(G.L) * double(G.S) * double(G.D));
  g_oom = false;
  // heaviest tiles first (causal: the last query tiles see the most keys)
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
  for (int64_t t = 0; t < ntask; ++t)
    fwd_tile(G, ops, q, k, v, out, lse, t / nqb, nqb - 1 - t % nqb);
}

// ---- backward ---------------------------------------------------------------------------
template <class T>
struct Packed {  // per query tile of every (b, h): Q^T * scale, dO^T, D_i, lse (+inf = no weight)
  T *qt, *dot, *di, *lse;
  int64_t br, nqb, bc;  // query tile (lanes), query tiles per head, key tile
};

template <class T>
void bwd_prepass(const Geo& G, const Ops<T>& ops, const T* go, const T* q, const T* out,
                 const T* lse, const Packed<T>& P, int64_t bh, int64_t qb) {
  const int64_t D = G.D, Dv = G.Dv, br = P.br, tile = bh * P.nqb + qb;
  const int64_t i0 = qb * br, n = std::min(br, G.L - i0);
  T* qt = P.qt + tile * D * br;
  T* dot = P.dot + tile * Dv * br;
  T* di = P.di + tile * br;
  T* ls = P.lse + tile * br;
  const T* qh = q + (bh * G.L + i0) * D;
  const T* gh = go + (bh * G.L + i0) * Dv;
  const T* oh = out + (bh * G.L + i0) * Dv;
  const T sc = T(G.scale * kLog2e);
  ops.pack_t(qh, D, n, D, sc, qt, br);
  // dO^T and D_i carry the softmax scale, so dP and dS come out scaled and dK = dS^T Q,
  // dQ = dS K need no separate scaling pass
  ops.pack_t(gh, Dv, n, Dv, T(G.scale), dot, br);
  ops.rowdot(gh, oh, Dv, n, Dv, di);
  for (int64_t ii = 0; ii < br; ++ii) {
    const bool in = ii < n;
    di[ii] = in ? di[ii] * T(G.scale) : T(0);
    const T lv = in ? lse[bh * G.L + i0 + ii] : std::numeric_limits<T>::infinity();
    ls[ii] = lv == -std::numeric_limits<T>::infinity() ? std::numeric_limits<T>::infinity()
                                                        : T(double(lv) * kLog2e);
  }
}

// Queue the operands of the sweep's next query tile (packed Q^T, dO^T, D_i, lse; the Q, dO
// and dQ rows: 160 KiB at br = 128, D = 64) for prefetch into L2 while this one's key tiles
// run, and after the sweep's last query tile the next group's K and V tiles: at long T a
// unit's query-side operands leave L2 between sweeps. Not causal: there the measured effect
// was nil to slightly negative (64-row tiles, sweeps that shorten along the diagonal).
template <class T>
void prefetch_next(const Geo& G, const Ops<T>& ops, const Packed<T>& P, const T* go, const T* q,
                   const T* k, const T* v, const T* dq, int64_t b, int64_t hk, int64_t r,
                   int64_t qb, int64_t kb0, int64_t kb1) {
  const int64_t D = G.D, Dv = G.Dv, br = P.br, e = sizeof(T);
  if (qb + 1 < P.nqb || r + 1 < G.g) {
    const int64_t nr = qb + 1 < P.nqb ? r : r + 1, nq = qb + 1 < P.nqb ? qb + 1 : 0;
    const int64_t bh = b * G.Hq + hk * G.g + nr, tile = bh * P.nqb + nq, i0 = nq * br;
    const int64_t n = std::min(br, G.L - i0);
    ops.prefetch(P.qt + tile * D * br, e * D * br);
    ops.prefetch(P.dot + tile * Dv * br, e * Dv * br);
    ops.prefetch(P.di + tile * br, e * br);
    ops.prefetch(P.lse + tile * br, e * br);
    ops.prefetch(go + (bh * G.L + i0) * Dv, e * n * Dv);
    ops.prefetch(q + (bh * G.L + i0) * D, e * n * D);
    ops.prefetch(dq + (nr * G.L + i0) * D, e * n * D);
  } else if (kb1 * P.bc < G.S) {
    const int64_t u = b * G.Hkv + hk, j0 = kb1 * P.bc;
    const int64_t jn = std::min(G.S - j0, (kb1 - kb0) * P.bc);
    ops.prefetch(k + (u * G.S + j0) * D, e * jn * D);
    ops.prefetch(v + (u * G.S + j0) * Dv, e * jn * Dv);
  }
}

// Key tiles [kb0, kb1) of one (b, kv-head) unit, query tiles outermost (one read of each packed
// query tile per group); dq points at the unit's (g, L, D) dQ accumulator.
template <class T>
void bwd_tiles(const Geo& G, const Ops<T>& ops, const Packed<T>& P, const T* go, const T* q,
               const T* k, const T* v, T* gk, T* gv, T* dq, int64_t b, int64_t hk, int64_t kb0,
               int64_t kb1, bool dq_init) {
  const int64_t D = G.D, Dv = G.Dv, nqb = P.nqb, br = P.br, bc = P.bc;
  T* st = scratch<T>(2, bc * br);
  T* dpt = scratch<T>(3, bc * br);
  T* z = G.p > 0 ? scratch<T>(4, bc * br) : nullptr;
  T* pd = G.p > 0 ? scratch<T>(5, bc * br) : nullptr;
  if (g_oom) return;
  const int64_t u = b * G.Hkv + hk;
  for (int64_t r = 0; r < G.g; ++r) {
    const int64_t h = hk * G.g + r, bh = b * G.Hq + h;
    for (int64_t qb = G.causal ? kb0 * bc / br : 0; qb < nqb; ++qb) {
      const int64_t i0 = qb * br, n = std::min(br, G.L - i0), tile = bh * nqb + qb;
      if (ops.prefetch && !G.causal) prefetch_next(G, ops, P, go, q, k, v, dq, b, hk, r, qb, kb0, kb1);
      for (int64_t kb = kb0; kb < kb1; ++kb) {
        const int64_t j0 = kb * bc, jn = std::min(bc, G.S - j0);
        if (G.causal && qb < j0 / br) continue;  // tile entirely above the diagonal
        const T* kh = k + (u * G.S + j0) * D;
        const T* vh = v + (u * G.S + j0) * Dv;
        // dK_j, dV_j accumulate in place in the outputs (their rows belong to this task alone);
        // the key tile's first visit -- head r = 0, the first query tile on or below the
        // diagonal -- overwrites them. This drops a zeroing pass and a copy-out pass over
        // 256 KiB per group of key tiles and two scratch buffers (no speed change we could
        // separate from the noise, ~1%).
        T* dkt = gk + (u * G.S + j0) * D;
        T* dvt = gv + (u * G.S + j0) * Dv;
        const bool first = r == 0 && qb == (G.causal ? j0 / br : 0);
        // nothing between the S GEMM and the exp (no mask, tile below the causal diagonal):
        // the exp runs in the GEMM's store, while S is still in registers
        if (!G.mask && !(G.causal && j0 + jn - 1 > i0)) {
          ops.gemm_exp(jn, br, D, kh, D, 1, P.qt + tile * D * br, br, st, br, P.lse + tile * br);
        } else {
          ops.gemm(jn, br, D, kh, D, 1, P.qt + tile * D * br, br, st, br, false, nullptr);
          if (G.mask) apply_mask(G, st, b, h, i0, n, j0, jn, br);
          if (G.causal) apply_causal(st, i0, j0, jn, br);
          ops.exp_sub(st, jn, br, P.lse + tile * br);
        }
        const T* pdrop = st;
        if (z) {
          dropout_factors(G, z, bh, i0, n, j0, jn, br);
          for (int64_t e = 0; e < jn * br; ++e) pd[e] = st[e] * z[e];
          pdrop = pd;
        }
        ops.gemm(jn, Dv, n, pdrop, br, 1, go + (bh * G.L + i0) * Dv, Dv, dvt, Dv, !first, nullptr);
        if (!z) {
          ops.gemm_ds(jn, br, Dv, vh, Dv, 1, P.dot + tile * Dv * br, br, dpt, br, st,
                      P.di + tile * br);
        } else {
          ops.gemm(jn, br, Dv, vh, Dv, 1, P.dot + tile * Dv * br, br, dpt, br, false, nullptr);
          for (int64_t e = 0; e < jn * br; ++e) dpt[e] *= z[e];
          ops.ds(st, dpt, jn, br, P.di + tile * br);
        }
        ops.gemm(jn, D, n, dpt, br, 1, q + (bh * G.L + i0) * D, D, dkt, D, !first, nullptr);
        // the unit's first key tile (visited first for every query tile) overwrites dQ
        ops.gemm(n, D, jn, dpt, 1, br, kh, D, dq + (r * G.L + i0) * D, D,
                 !(dq_init && kb == 0), nullptr);
      }
    }
  }
  // causal key tiles past the last query (S > L) are never visited: their gradients are 0
  for (int64_t kb = kb0; kb < kb1; ++kb) {
    const int64_t j0 = kb * bc, jn = std::min(bc, G.S - j0);
    if (!G.causal || j0 / br < nqb) continue;
    std::memset(gk + (u * G.S + j0) * D, 0, sizeof(T) * size_t(jn * D));
    std::memset(gv + (u * G.S + j0) * Dv, 0, sizeof(T) * size_t(jn * Dv));
  }
}

// Caller-thread scratch for the whole call (packed tiles, private dQ buffers).
template <class T>
T* call_scratch(int slot, int64_t n) {
  return scratch<T>(6 + slot, n);
}

template <class T>
void backward(const Geo& G, const T* go, const T* q, const T* k, const T* v, const T* out,
              const T* lse, T* gq, T* gk, T* gv) {
  const Ops<T>& ops = ops_for<T>();
  // Non-causal: 128-query tiles, so the dV and dK tile GEMMs run twice as many k steps per
  // load/store of their accumulators and the per-tile overheads halve. Causal keeps 64 (a
  // wider tile would waste more masked work along the diagonal).
  const int64_t br = G.causal ? kBr : 2 * kBr, bc = G.causal ? kBc : 2 * kBc;
  const int64_t nqb = (G.L + br - 1) / br, nkb = (G.S + bc - 1) / bc, BH = G.B * G.Hq;
  const int64_t units = G.B * G.Hkv;
  const int64_t ntile = BH * nqb;
  const int nt = threads_for(10.0 * double(BH) * double(G.L) * double(G.S) * double(G.D));
  g_oom = false;
  T* ws = call_scratch<T>(0, ntile * br * (G.D + G.Dv + 2));
  if (g_oom) throw std::bad_alloc();
  const Packed<T> P{ws, ws + ntile * br * G.D, ws + ntile * br * (G.D + G.Dv),
                    ws + ntile * br * (G.D + G.Dv + 1), br, nqb, bc};
  const int64_t unit_q = G.g * G.L * G.D;  // one unit's dQ elements
  // key tiles per sweep (whole-unit path): 4 x 128 keys' K, V, dK, dV (256 KiB, D = 64) stay in L2
  const int64_t kGroup = G.causal ? 1 : 4;
  if (nt == 1 || units % nt == 0 || units >= 4 * nt) {
    // threads own whole units: dQ written in place, the first key tile (which visits every
    // query tile, causal or not) overwrites it, so gq needs no zeroing pass. The unit's query
    // tiles are packed by its own thread right before its key-tile sweeps, so they are still
    // in that core's L2 (a separate pre-pass over all heads would leave them in L3/DRAM).
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
    for (int64_t uu = 0; uu < units; ++uu) {
      const int64_t b = uu / G.Hkv, hk = uu % G.Hkv;
      for (int64_t r = 0; r < G.g; ++r)
        for (int64_t qb = 0; qb < nqb; ++qb)
          bwd_prepass(G, ops, go, q, out, lse, P, b * G.Hq + hk * G.g + r, qb);
      for (int64_t kb = 0; kb < nkb; kb += kGroup)
        bwd_tiles(G, ops, P, go, q, k, v, gk, gv, gq + uu * unit_q, b, hk, kb,
                  std::min(nkb, kb + kGroup), true);
    }
  } else {
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t t = 0; t < ntile; ++t)
      bwd_prepass(G, ops, go, q, out, lse, P, t / nqb, t % nqb);
    T* priv = call_scratch<T>(1, int64_t(nt) * unit_q);
    if (g_oom) throw std::bad_alloc();
    for (int64_t uu = 0; uu < units; ++uu) {
#pragma omp parallel num_threads(nt)
      {
        T* mine = priv + int64_t(omp_get_thread_num()) * unit_q;
        std::memset(mine, 0, sizeof(T) * size_t(unit_q));
#pragma omp for schedule(dynamic, 1)
        for (int64_t kb = 0; kb < nkb; ++kb)
          bwd_tiles(G, ops, P, go, q, k, v, gk, gv, mine, uu / G.Hkv, uu % G.Hkv, kb, kb + 1,
                    false);
        T* dst = gq + uu * unit_q;
        const int nth = omp_get_num_threads();
#pragma omp for schedule(static)
        for (int64_t e = 0; e < unit_q; ++e) {
          T s = 0;
          for (int t = 0; t < nth; ++t) s += priv[int64_t(t) * unit_q + e];
          dst[e] = s;
        }
      }
    }
  }
  if (g_oom) throw std::bad_alloc();
}
}  // namespace

void attention_forward(const Arr& q, const Arr& k, const Arr& v, const OptArr& mask, Arr out,
                       Arr lse, double scale, bool is_causal, double dropout_p, uint64_t seed) {
  const char* op = "attention_forward";
  const Geo G = check_args(op, q, k, v, mask, scale, is_causal, dropout_p, seed);
  check_output(out, op, "out");
  check_output(lse, op, "lse");
  check_same_dtype(q, out, op, "q", "out");
  check_same_dtype(q, lse, op, "q", "lse");
  expect(out, op, "out", {G.B, G.Hq, G.L, G.Dv});
  expect(lse, op, "lse", {G.B, G.Hq, G.L});
  if (G.B * G.Hq * G.L == 0) return;
  dispatch_float(q, op, "q", [&](auto t) {
    using T = decltype(t);
    const T *qp = cdata<T>(q), *kp = cdata<T>(k), *vp = cdata<T>(v);
    T *op_ = data<T>(out), *lp = data<T>(lse);
    py::gil_scoped_release nogil;
    forward<T>(G, qp, kp, vp, op_, lp);
  });
  if (g_oom) throw std::bad_alloc();
}

void attention_backward(const Arr& grad_out, const Arr& q, const Arr& k, const Arr& v,
                        const OptArr& mask, const Arr& out, const Arr& lse, Arr grad_q,
                        Arr grad_k, Arr grad_v, double scale, bool is_causal, double dropout_p,
                        uint64_t seed) {
  const char* op = "attention_backward";
  const Geo G = check_args(op, q, k, v, mask, scale, is_causal, dropout_p, seed);
  check_input(grad_out, op, "grad_out");
  check_input(out, op, "out");
  check_input(lse, op, "lse");
  for (const Arr* a : {&grad_out, &out, &lse}) check_same_dtype(q, *a, op, "q", "grad_out/out/lse");
  expect(grad_out, op, "grad_out", {G.B, G.Hq, G.L, G.Dv});
  expect(out, op, "out", {G.B, G.Hq, G.L, G.Dv});
  expect(lse, op, "lse", {G.B, G.Hq, G.L});
  check_output(grad_q, op, "grad_q");
  check_output(grad_k, op, "grad_k");
  check_output(grad_v, op, "grad_v");
  check_same_dtype(q, grad_q, op, "q", "grad_q");
  check_same_dtype(q, grad_k, op, "q", "grad_k");
  check_same_dtype(q, grad_v, op, "q", "grad_v");
  expect(grad_q, op, "grad_q", {G.B, G.Hq, G.L, G.D});
  expect(grad_k, op, "grad_k", {G.B, G.Hkv, G.S, G.D});
  expect(grad_v, op, "grad_v", {G.B, G.Hkv, G.S, G.Dv});
  dispatch_float(q, op, "q", [&](auto t) {
    using T = decltype(t);
    T *gq = data<T>(grad_q), *gk = data<T>(grad_k), *gv = data<T>(grad_v);
    py::gil_scoped_release nogil;
    if (G.B * G.Hq * G.L == 0 || G.S == 0) {
      std::memset(gk, 0, sizeof(T) * size_t(G.B * G.Hkv * G.S * G.D));
      std::memset(gv, 0, sizeof(T) * size_t(G.B * G.Hkv * G.S * G.Dv));
      std::memset(gq, 0, sizeof(T) * size_t(G.B * G.Hq * G.L * G.D));
      return;
    }
    // every key tile of every (b, kv-head) writes its dK, dV rows and every dQ row is
    // written (see backward), so the outputs need no zeroing here
    backward<T>(G, cdata<T>(grad_out), cdata<T>(q), cdata<T>(k), cdata<T>(v), cdata<T>(out),
                cdata<T>(lse), gq, gk, gv);
  });
}

}  // namespace kiln::cpu
