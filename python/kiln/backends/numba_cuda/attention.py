"""Fused (flash-style) scaled-dot-product attention on the Numba CUDA table.

The math is the CPU table's (csrc/cpu/attention.cpp):

    q (B, Hq, L, D), k (B, Hkv, S, D), v (B, Hkv, S, Dv), Hq = g * Hkv (query head h reads
    key/value head h // g); s_ij = scale * q_i . k_j + mask_ij (bool mask: False -> -inf),
    causal: j > i -> -inf (top-left); P = softmax_j(s); out = dropout(P) v;
    lse_i = log sum_j e^(s_ij) (natural log; -inf for a fully masked row, whose out is 0).

The mask is 4-d, each dim 1 (broadcast) or full (B, Hq, L, S). Dropout keeps element
((b * Hq + h) * L + i) * S + j when its Philox4x32-10 uniform is >= p (csrc/common/philox.h),
kept weights scaled by 1 / (1 - p), so backward regenerates the forward's mask.

Forward: one block per (b, h, query tile of BQ rows), one thread per query row. Key/value tiles
of BK rows are staged in shared memory by the whole block; each thread forms its row's BK
scores in registers and runs the online softmax (running max m and sum l, the output row
rescaled by e^(m_old - m_new) once per tile). Memory is O(T * D); the L x S matrix never exists.

Backward (FlashAttention-2, recomputing P = e^(s - lse) tile by tile), deterministic, no atomics:
  D_i = rowsum(dO * O)                         (one thread per row, into device scratch)
  dQ kernel, per query tile (thread = query row), over key tiles:
      dP = dO V^T (* keep / (1-p)), dS = P * (dP - D_i), dQ = scale * dS K
  dK/dV kernel, per (b, kv head, key tile) (thread = key row), over the query tiles of every
  query head of the group:  dV = (P * keep / (1-p))^T dO,  dK = scale * dS^T Q
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from kiln.backends.numba_cuda._common import (
    check_float,
    check_same_dtype,
    describe,
    dev,
    flat,
    grid1d,
    jit,
)
from kiln.backends.numba_cuda._philox import U0 as _U0
from kiln.backends.numba_cuda._philox import U2 as _U2
from kiln.backends.numba_cuda._philox import U8 as _U8
from kiln.backends.numba_cuda._philox import philox4x32 as _philox4x32
from kiln.backends.numba_cuda._philox import pick as _pick

KMAX = 32  # the most keys (forward/dQ) or queries (dK/dV) per tile: local score arrays
TILE = KMAX  # tile cap used by the launches (tests lower it to reach the multi-tile paths)
SMEM = 48 * 1024  # bytes of shared memory a block may use without opting in

# ---- dropout: Philox4x32-10 (_philox.py), the CPU's element index convention ------------
_NONE = np.uint64(0xFFFFFFFFFFFFFFFF)  # "no Philox block cached yet"


@jit(device=True)
def _keep(seed_lo, seed_hi, idx, thr):
    """Dropout's keep decision for element idx (uncached; the dK/dV kernel's column walk)."""
    uidx = np.uint64(idx)
    w0, w1, w2, w3 = _philox4x32(seed_lo, seed_hi, uidx >> _U2)
    return (_pick(w0, w1, w2, w3, uidx) >> _U8) >= thr


# ---- score of one (i, j) pair: mask and causal applied; s is scale * q_i . k_j -----------
@jit(device=True)
def _masked(s, mask, mkind, moff, i, j, causal, ninf):
    if causal and j > i:
        return ninf
    if mkind == 1:
        if not mask[moff]:
            return ninf
    elif mkind == 2:
        s += mask[moff]
    return s


# ---- forward ----------------------------------------------------------------------------
@jit
def _fwd(q, k, v, mask, mkind, msb, msh, msl, mss, out, lse, g, nqb, BK, scale, causal,
         thr, fac, seed_lo, seed_hi, zero, one, ninf):
    Hq, L, D = q.shape[1], q.shape[2], q.shape[3]
    S, Dv = k.shape[2], v.shape[3]
    BQ = cuda.blockDim.x
    tid = cuda.threadIdx.x
    bh = cuda.blockIdx.x // nqb
    b, h = bh // Hq, bh % Hq
    hk = h // g
    i0 = (cuda.blockIdx.x % nqb) * BQ
    i = i0 + tid
    ok = i < L
    sm = cuda.shared.array(0, dtype=q.dtype)
    qo, ao, ko = tid * D, BQ * D + tid * Dv, BQ * (D + Dv)
    vo = ko + BK * D
    if ok:
        for d in range(D):
            sm[qo + d] = q[b, h, i, d]
        for d in range(Dv):
            sm[ao + d] = zero
    sc = cuda.local.array(KMAX, dtype=q.dtype)
    m = ninf
    lsum = zero
    blk = _NONE
    w0 = w1 = w2 = w3 = _U0
    jend = min(S, i0 + BQ) if causal else S  # causal key tiles right of the tile never count
    for j0 in range(0, jend, BK):
        jn = min(BK, jend - j0)
        cuda.syncthreads()  # the previous tile is consumed
        for e in range(tid, jn * D, BQ):
            sm[ko + e] = k[b, hk, j0 + e // D, e % D]
        for e in range(tid, jn * Dv, BQ):
            sm[vo + e] = v[b, hk, j0 + e // Dv, e % Dv]
        cuda.syncthreads()
        if ok:
            mt = ninf
            moff = b * msb + h * msh + i * msl
            for jj in range(jn):
                s = zero
                for d in range(D):
                    s += sm[qo + d] * sm[ko + jj * D + d]
                s = _masked(s * scale, mask, mkind, moff + (j0 + jj) * mss, i, j0 + jj, causal,
                            ninf)
                sc[jj] = s
                mt = max(mt, s)
            mnew = max(m, mt)
            # alpha rescales what was accumulated under the old max; a row with no unmasked
            # key yet (max -inf) has nothing accumulated and takes p = 0
            alpha = zero if m == ninf else math.exp(m - mnew)
            lsum *= alpha
            for jj in range(jn):
                pj = zero if mnew == ninf else math.exp(sc[jj] - mnew)
                lsum += pj
                if thr > _U0:
                    idx = np.uint64(((bh * L + i) * S) + j0 + jj)
                    if (idx >> _U2) != blk:
                        blk = idx >> _U2
                        w0, w1, w2, w3 = _philox4x32(seed_lo, seed_hi, blk)
                    pj = pj * fac if (_pick(w0, w1, w2, w3, idx) >> _U8) >= thr else zero
                sc[jj] = pj
            for d in range(Dv):
                a = sm[ao + d] * alpha
                for jj in range(jn):
                    a += sc[jj] * sm[vo + jj * Dv + d]
                sm[ao + d] = a
            m = mnew
    if ok:
        inv = zero if lsum == zero else one / lsum  # fully masked row: 0, as torch
        for d in range(Dv):
            out[b, h, i, d] = sm[ao + d] * inv
        lse[b, h, i] = ninf if lsum == zero else m + math.log(lsum)


# ---- backward ---------------------------------------------------------------------------
@jit
def _rowdot(go, out, di, n, Dv, zero):
    r = cuda.grid(1)
    if r < n:
        s = zero
        for d in range(Dv):
            s += go[r * Dv + d] * out[r * Dv + d]
        di[r] = s


@jit
def _bwd_dq(go, q, k, v, mask, mkind, msb, msh, msl, mss, lse, di, gq, g, nqb, BK, scale,
            causal, thr, fac, seed_lo, seed_hi, zero, ninf):
    Hq, L, D = q.shape[1], q.shape[2], q.shape[3]
    S, Dv = k.shape[2], v.shape[3]
    BQ = cuda.blockDim.x
    tid = cuda.threadIdx.x
    bh = cuda.blockIdx.x // nqb
    b, h = bh // Hq, bh % Hq
    hk = h // g
    i0 = (cuda.blockIdx.x % nqb) * BQ
    i = i0 + tid
    ok = i < L
    sm = cuda.shared.array(0, dtype=q.dtype)
    qo, oo, ao = tid * D, BQ * D + tid * Dv, BQ * (D + Dv) + tid * D
    ko = BQ * (2 * D + Dv)
    vo = ko + BK * D
    li = zero
    dii = zero
    if ok:
        for d in range(D):
            sm[qo + d] = q[b, h, i, d]
            sm[ao + d] = zero
        for d in range(Dv):
            sm[oo + d] = go[b, h, i, d]
        li = lse[b, h, i]
        dii = di[bh * L + i]
    sp = cuda.local.array(KMAX, dtype=q.dtype)
    blk = _NONE
    w0 = w1 = w2 = w3 = _U0
    jend = min(S, i0 + BQ) if causal else S
    for j0 in range(0, jend, BK):
        jn = min(BK, jend - j0)
        cuda.syncthreads()
        for e in range(tid, jn * D, BQ):
            sm[ko + e] = k[b, hk, j0 + e // D, e % D]
        for e in range(tid, jn * Dv, BQ):
            sm[vo + e] = v[b, hk, j0 + e // Dv, e % Dv]
        cuda.syncthreads()
        if ok and li != ninf:  # a fully masked row has P = 0 and zero gradients
            moff = b * msb + h * msh + i * msl
            for jj in range(jn):
                s = zero
                for d in range(D):
                    s += sm[qo + d] * sm[ko + jj * D + d]
                s = _masked(s * scale, mask, mkind, moff + (j0 + jj) * mss, i, j0 + jj, causal,
                            ninf)
                pj = zero if s == ninf else math.exp(s - li)
                dp = zero
                for d in range(Dv):
                    dp += sm[oo + d] * sm[vo + jj * Dv + d]
                if thr > _U0:
                    idx = np.uint64(((bh * L + i) * S) + j0 + jj)
                    if (idx >> _U2) != blk:
                        blk = idx >> _U2
                        w0, w1, w2, w3 = _philox4x32(seed_lo, seed_hi, blk)
                    dp = dp * fac if (_pick(w0, w1, w2, w3, idx) >> _U8) >= thr else zero
                sp[jj] = pj * (dp - dii)
            for d in range(D):
                a = sm[ao + d]
                for jj in range(jn):
                    a += sp[jj] * sm[ko + jj * D + d]
                sm[ao + d] = a
    if ok:
        for d in range(D):
            gq[b, h, i, d] = sm[ao + d] * scale


@jit
def _bwd_dkv(go, q, k, v, mask, mkind, msb, msh, msl, mss, lse, di, gk, gv, g, nkb, BQ, scale,
             causal, thr, fac, seed_lo, seed_hi, zero, ninf):
    Hq, L, D = q.shape[1], q.shape[2], q.shape[3]
    Hkv, S, Dv = k.shape[1], k.shape[2], v.shape[3]
    BK = cuda.blockDim.x
    tid = cuda.threadIdx.x
    u = cuda.blockIdx.x // nkb
    b, hk = u // Hkv, u % Hkv
    j0 = (cuda.blockIdx.x % nkb) * BK
    j = j0 + tid
    ok = j < S
    sm = cuda.shared.array(0, dtype=q.dtype)
    # per key row: k, v, dK, dV accumulators; per staged query row: q, dO, lse, D_i
    ko, vo = tid * D, BK * D + tid * Dv
    dko, dvo = BK * (D + Dv) + tid * D, BK * (2 * D + Dv) + tid * Dv
    qs = 2 * BK * (D + Dv)
    os_ = qs + BQ * D
    ls = os_ + BQ * Dv
    ds_ = ls + BQ
    if ok:
        for d in range(D):
            sm[ko + d] = k[b, hk, j, d]
            sm[dko + d] = zero
        for d in range(Dv):
            sm[vo + d] = v[b, hk, j, d]
            sm[dvo + d] = zero
    sp = cuda.local.array(KMAX, dtype=q.dtype)
    sz = cuda.local.array(KMAX, dtype=q.dtype)
    # causal: query tiles entirely above this key tile (every i < j0) never see its keys
    qstart = (j0 // BQ) * BQ if causal else 0
    for r in range(g):
        h = hk * g + r
        bh = b * Hq + h
        for i0 in range(qstart, L, BQ):
            n = min(BQ, L - i0)
            cuda.syncthreads()
            for e in range(tid, n * D, BK):
                sm[qs + e] = q[b, h, i0 + e // D, e % D]
            for e in range(tid, n * Dv, BK):
                sm[os_ + e] = go[b, h, i0 + e // Dv, e % Dv]
            for e in range(tid, n, BK):
                sm[ls + e] = lse[b, h, i0 + e]
                sm[ds_ + e] = di[bh * L + i0 + e]
            cuda.syncthreads()
            if ok:
                for ii in range(n):
                    i = i0 + ii
                    li = sm[ls + ii]
                    s = zero
                    for d in range(D):
                        s += sm[qs + ii * D + d] * sm[ko + d]
                    s = _masked(s * scale, mask, mkind, b * msb + h * msh + i * msl + j * mss,
                                i, j, causal, ninf)
                    pj = zero if (s == ninf or li == ninf) else math.exp(s - li)
                    dp = zero
                    for d in range(Dv):
                        dp += sm[os_ + ii * Dv + d] * sm[vo + d]
                    z = pj
                    if thr > _U0:
                        kept = _keep(seed_lo, seed_hi, ((bh * L + i) * S) + j, thr)
                        z = pj * fac if kept else zero
                        dp = dp * fac if kept else zero
                    sz[ii] = z
                    sp[ii] = pj * (dp - sm[ds_ + ii])
                for d in range(Dv):
                    a = sm[dvo + d]
                    for ii in range(n):
                        a += sz[ii] * sm[os_ + ii * Dv + d]
                    sm[dvo + d] = a
                for d in range(D):
                    a = sm[dko + d]
                    for ii in range(n):
                        a += sp[ii] * sm[qs + ii * D + d]
                    sm[dko + d] = a
    if ok:
        for d in range(D):
            gk[b, hk, j, d] = sm[dko + d] * scale
        for d in range(Dv):
            gv[b, hk, j, d] = sm[dvo + d]


@jit
def _fill(a, val):
    for e in range(cuda.grid(1), a.size, cuda.gridsize(1)):
        a[e] = val


# ---- host side: the CPU kernel's checks, then the launches -------------------------------
def _expect(a, op, name, dims):
    if tuple(a.shape) != tuple(dims):
        raise ValueError(f"{op}: {describe(a, name)} must have shape {tuple(dims)}")


def _check4(a, op, name):
    if a.ndim != 4:
        raise ValueError(f"{op}: {describe(a, name)} must be 4-d")


def _setup(op, q, k, v, mask, dropout_p, seed):
    """Device arrays, geometry and the mask's (kind, strides), after the CPU table's checks."""
    q, k, v = dev(q, op, "q"), dev(k, op, "k"), dev(v, op, "v")
    mask = dev(mask, op, "mask", optional=True)
    check_float(q, op, "q")
    for a, n in ((q, "q"), (k, "k"), (v, "v")):
        _check4(a, op, n)
    check_same_dtype(q, k, op, "q", "k")
    check_same_dtype(q, v, op, "q", "v")
    B, Hq, L, D = q.shape
    Hkv, S, Dv = k.shape[1], k.shape[2], v.shape[3]
    if (k.shape[0] != B or k.shape[3] != D or v.shape[0] != B or v.shape[1] != Hkv
            or v.shape[2] != S):
        raise ValueError(f"{op}: incompatible {describe(q, 'q')}, {describe(k, 'k')}, "
                         f"{describe(v, 'v')} (want (B, Hq, L, D), (B, Hkv, S, D), "
                         "(B, Hkv, S, Dv))")
    if (Hq != 0) if Hkv == 0 else (Hq % Hkv != 0):
        raise ValueError(f"{op}: query heads {Hq} must be a multiple of key/value heads {Hkv}")
    if not 0 <= dropout_p <= 1:
        raise ValueError(f"{op}: dropout_p must be in [0, 1]")
    seed = int(seed)
    if not 0 <= seed < 2**64:
        raise TypeError(f"{op}: seed {seed} must be an unsigned 64-bit integer")
    geo = {"B": B, "Hq": Hq, "Hkv": Hkv, "L": L, "S": S, "D": D, "Dv": Dv,
           "g": Hq // Hkv if Hkv else 1}
    mk, strides = 0, (0, 0, 0, 0)
    if mask is not None:
        _check4(mask, op, "mask")
        full, st, acc = (B, Hq, L, S), [0] * 4, 1
        for ax in range(3, -1, -1):
            if mask.shape[ax] not in (1, full[ax]):
                raise ValueError(f"{op}: {describe(mask, 'mask')} does not broadcast to {full}")
            st[ax] = 0 if mask.shape[ax] == 1 else acc
            acc *= mask.shape[ax]
        strides = tuple(st)
        if np.dtype(mask.dtype) == np.bool_:
            mk = 1
        else:
            check_same_dtype(q, mask, op, "q", "mask")
            mk = 2
    return q, k, v, mask, mk, strides, geo, seed


def _consts(q, scale, p, seed):
    t = np.dtype(q.dtype).type
    fac = 1.0 / (1.0 - p) if p < 1 else 0.0
    # kept iff uniform = (word >> 8) * 2^-24 >= float32(p), i.e. iff (word >> 8) >= thr: the
    # same decision as the CPU's float compare, in integers (no float64 math in the kernels)
    thr = np.uint64(math.ceil(float(np.float32(p)) * 16777216.0))
    return (t(scale), t(1), thr, t(fac), np.uint64(seed & 0xFFFFFFFF),
            np.uint64(seed >> 32), t(0), t(-np.inf))


def _pow2(n, most):
    t = 1
    while t < min(n, most):
        t *= 2
    return t


def _tiles(op, rows, cols, per_row, per_col, extra_row, itemsize):
    """(threads, staged tile) -- a thread per row of a tile of up to KMAX rows (fewer for
    short sequences), the staged tile of up to KMAX rows; both shrink until the block's shared
    memory fits in SMEM."""
    tr, tc = _pow2(rows, TILE), _pow2(cols, TILE)
    while itemsize * (tr * per_row + tc * (per_col + extra_row)) > SMEM:
        if tr == 1 and tc == 1:
            raise ValueError(f"{op}: head dimensions too large for the Numba CUDA table's "
                             f"shared-memory tiles ({per_row + per_col} values per row)")
        if tr >= tc:
            tr //= 2
        else:
            tc //= 2
    return tr, tc, itemsize * (tr * per_row + tc * (per_col + extra_row))


def attention_forward(q, k, v, mask, out, lse, scale, is_causal, dropout_p, seed) -> None:
    """Fused attention forward: out = dropout(softmax(scale q k^T + mask)) v, lse per row."""
    op = "attention_forward"
    dropout_p = float(dropout_p)
    q, k, v, mask, mk, ms, G, seed = _setup(op, q, k, v, mask, dropout_p, seed)
    out, lse = dev(out, op, "out"), dev(lse, op, "lse")
    check_same_dtype(q, out, op, "q", "out")
    check_same_dtype(q, lse, op, "q", "lse")
    _expect(out, op, "out", (G["B"], G["Hq"], G["L"], G["Dv"]))
    _expect(lse, op, "lse", (G["B"], G["Hq"], G["L"]))
    if G["B"] * G["Hq"] * G["L"] == 0:
        return
    D, Dv = G["D"], G["Dv"]
    bq, bk, shmem = _tiles(op, G["L"], G["S"], D + Dv, D + Dv, 0, np.dtype(q.dtype).itemsize)
    nqb = -(-G["L"] // bq)
    sc, one, thr, fac, slo, shi, zero, ninf = _consts(q, scale, dropout_p, seed)
    m = flat(mask) if mask is not None else flat(q)  # unused when mk == 0
    _fwd[G["B"] * G["Hq"] * nqb, bq, 0, shmem](
        q, k, v, m, mk, *ms, out, lse, G["g"], nqb, bk, sc, bool(is_causal), thr, fac, slo, shi,
        zero, one, ninf)


def attention_backward(grad_out, q, k, v, mask, out, lse, grad_q, grad_k, grad_v, scale,
                       is_causal, dropout_p, seed) -> None:
    """Fused attention backward from lse (scores recomputed tile by tile): grad_q, grad_k,
    grad_v (grad_k / grad_v summed over the query heads of each group)."""
    op = "attention_backward"
    dropout_p = float(dropout_p)
    q, k, v, mask, mk, ms, G, seed = _setup(op, q, k, v, mask, dropout_p, seed)
    grad_out, out, lse = dev(grad_out, op, "grad_out"), dev(out, op, "out"), dev(lse, op, "lse")
    for a in (grad_out, out, lse):
        check_same_dtype(q, a, op, "q", "grad_out/out/lse")
    B, Hq, Hkv, L, S, D, Dv = (G[x] for x in ("B", "Hq", "Hkv", "L", "S", "D", "Dv"))
    _expect(grad_out, op, "grad_out", (B, Hq, L, Dv))
    _expect(out, op, "out", (B, Hq, L, Dv))
    _expect(lse, op, "lse", (B, Hq, L))
    gq, gk, gv = dev(grad_q, op, "grad_q"), dev(grad_k, op, "grad_k"), dev(grad_v, op, "grad_v")
    for a, n in ((gq, "grad_q"), (gk, "grad_k"), (gv, "grad_v")):
        check_same_dtype(q, a, op, "q", n)
    _expect(gq, op, "grad_q", (B, Hq, L, D))
    _expect(gk, op, "grad_k", (B, Hkv, S, D))
    _expect(gv, op, "grad_v", (B, Hkv, S, Dv))
    sc, _one, thr, fac, slo, shi, zero, ninf = _consts(q, scale, dropout_p, seed)
    if B * Hq * L == 0 or S == 0:
        for a in (gq, gk, gv):
            if a.size:
                _fill[grid1d(a.size)](flat(a), zero)
        return
    rows = B * Hq * L
    di = cuda.device_array(rows, dtype=q.dtype)  # D_i = rowsum(dO * O), O(T) scratch
    _rowdot[grid1d(rows, 128)](flat(grad_out), flat(out), di, rows, Dv, zero)
    m = flat(mask) if mask is not None else flat(q)
    isz = np.dtype(q.dtype).itemsize
    causal = bool(is_causal)
    bq, bk, shmem = _tiles(op, L, S, 2 * D + Dv, D + Dv, 0, isz)
    nqb = -(-L // bq)
    _bwd_dq[B * Hq * nqb, bq, 0, shmem](
        grad_out, q, k, v, m, mk, *ms, lse, di, gq, G["g"], nqb, bk, sc, causal, thr, fac, slo,
        shi, zero, ninf)
    bk2, bq2, shmem = _tiles(op, S, L, 2 * (D + Dv), D + Dv, 2, isz)
    nkb = -(-S // bk2)
    _bwd_dkv[B * Hkv * nkb, bk2, 0, shmem](
        grad_out, q, k, v, m, mk, *ms, lse, di, gk, gv, G["g"], nkb, bq2, sc, causal, thr, fac,
        slo, shi, zero, ninf)
