"""Recurrent-layer time loops (RNN tanh/relu, LSTM, GRU) on the Numba CUDA table, forward and
backward, one direction of one layer per call. The math is the CPU table's
(csrc/cpu/rnn_loop.cpp; PyTorch's gate orders LSTM i, f, g, o and GRU r, z, n):

    rnn:  h' = act(xg + W_hh h + b_hh)
    lstm: [i f g o] = [sig sig tanh sig](xg + W_hh h + b_hh);  c' = f c + i g;  h' = o tanh(c')
    gru:  gh = W_hh h + b_hh;  r, z = sig(xg_rz + gh_rz);  n = tanh(xg_n + r gh_n);
          h' = (1 - z) n + z h

xg = x W_ih^T + b_ih (T, B, G*H) is computed by the caller. ``gates`` (T, B, G*H) saves the
post-activation gates, ``extra`` (T, B, H) lstm's c_t or gru's W_hn h + b_hn; both are
written only at a sequence's own steps. With ``lengths`` sequence b takes only steps
t < lengths[b] (the reverse direction, direction 1, starts at its own last step from h0);
padded steps leave the state alone and write zero outputs (backward: zero gradients).

The recurrence is sequential in t, so the host loops over the steps and launches one fused
kernel per step. Forward step: one block per batch row b (rows are independent recurrences):
the block stages h_{t-1}[b] in shared memory, then each thread owns hidden units j and forms
its G pre-activations W_hh[g*H + j] . h + b_hh + xg and the cell update. The state lives in
h_n / c_n themselves (initialised from h0 / c0), updated in place: a block only ever reads
its own row, from the shared copy.

Backward step (reverse order), one block per row: phase 1 turns dh (+ grad_out) and dc into the
pre-activation gate gradients dxg (and GRU's hidden-side dg, whose n block is scaled by r),
and saves h_{t-1}; after a barrier phase 2 forms dh_{t-1} = dg W_hh (coalesced over the
columns; dg is re-read from global memory, just written by the same block). After the loop
d W_hh = dg^T Hprev is one shared-memory tiled GEMM over all T*B rows and the bias gradients
are column sums (one thread per column): deterministic, no atomics.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from kiln.backends.numba_cuda._common import (
    SIMULATOR,
    check_float,
    check_same_dtype,
    describe,
    dev,
    flat,
    grid1d,
    jit,
)

MODES = {"rnn_tanh": 0, "rnn_relu": 1, "lstm": 2, "gru": 3}
GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}
# tile of the d W_hh GEMM (8 x 8 in the simulator, where each of its threads is a Python thread)
TS = 8 if SIMULATOR else 16
SMEM = 48 * 1024


@jit(device=True)
def _sig(x, one):
    return one / (one + math.exp(-x))


@jit(device=True)
def _dot(sh, w, row, H, acc):
    for k in range(H):
        acc += sh[k] * w[row, k]
    return acc


@jit
def _fwd_step(mode, t, T, xg, w_hh, b_hh, has_bias, lens, has_len, h, c, out, off, gates, save,
              extra, save_extra, zero, one):
    b = cuda.blockIdx.x
    tid, nt = cuda.threadIdx.x, cuda.blockDim.x
    H = h.shape[1]
    L = lens[b] if has_len else T
    if t >= L:  # padded step (block-uniform): zero output, state unchanged
        for j in range(tid, H, nt):
            out[t, b, off + j] = zero
        return
    sh = cuda.shared.array(0, dtype=h.dtype)
    for k in range(tid, H, nt):
        sh[k] = h[b, k]
    cuda.syncthreads()
    for j in range(tid, H, nt):
        if mode == 2:  # lstm
            a = cuda.local.array(4, dtype=h.dtype)
            for q in range(4):
                a[q] = _dot(sh, w_hh, q * H + j, H, xg[t, b, q * H + j])
                if has_bias:
                    a[q] += b_hh[q * H + j]
            ig, fg, gg, og = _sig(a[0], one), _sig(a[1], one), math.tanh(a[2]), _sig(a[3], one)
            cn = fg * c[b, j] + ig * gg
            hn = og * math.tanh(cn)
            c[b, j] = cn
            if save:
                gates[t, b, j] = ig
                gates[t, b, H + j] = fg
                gates[t, b, 2 * H + j] = gg
                gates[t, b, 3 * H + j] = og
            if save_extra:
                extra[t, b, j] = cn
        elif mode == 3:  # gru
            gr = _dot(sh, w_hh, j, H, zero)
            gz = _dot(sh, w_hh, H + j, H, zero)
            gn = _dot(sh, w_hh, 2 * H + j, H, zero)
            if has_bias:
                gr += b_hh[j]
                gz += b_hh[H + j]
                gn += b_hh[2 * H + j]
            if save_extra:
                extra[t, b, j] = gn
            r = _sig(xg[t, b, j] + gr, one)
            z = _sig(xg[t, b, H + j] + gz, one)
            n = math.tanh(xg[t, b, 2 * H + j] + r * gn)
            hn = (one - z) * n + z * sh[j]
            if save:
                gates[t, b, j] = r
                gates[t, b, H + j] = z
                gates[t, b, 2 * H + j] = n
        else:
            a0 = _dot(sh, w_hh, j, H, xg[t, b, j])
            if has_bias:
                a0 += b_hh[j]
            if mode == 0:
                hn = math.tanh(a0)
            else:
                hn = zero if a0 < zero else a0  # NaN passes through, as torch
            if save:
                gates[t, b, j] = hn
        out[t, b, off + j] = hn
        h[b, j] = hn


@jit
def _bwd_step(mode, t, T, rev, grad_out, has_go, w_hh, h0, c0, lens, has_len, out, off, gates,
              extra, dh, dc, gxg, dg, dd, hp, zero, one):
    b = cuda.blockIdx.x
    tid, nt = cuda.threadIdx.x, cuda.blockDim.x
    H = dh.shape[1]
    GH = w_hh.shape[0]
    L = lens[b] if has_len else T
    if t >= L:  # padded: no gradient flows into this step, the carried one passes unchanged
        for e in range(tid, GH, nt):
            gxg[t, b, e] = zero
            dg[t, b, e] = zero
        for e in range(tid, H, nt):
            hp[t, b, e] = zero
        return
    tp = t + 1 if rev else t - 1
    seq = 0 <= tp < L  # the step started from the previous step's state, else from h0 / c0
    for j in range(tid, H, nt):
        dhj = dh[b, j]
        if has_go:
            dhj += grad_out[t, b, off + j]
        hs = out[tp, b, off + j] if seq else h0[b, j]
        hp[t, b, j] = hs
        if mode == 2:  # lstm
            cp = extra[tp, b, j] if seq else c0[b, j]
            th = math.tanh(extra[t, b, j])
            ig, fg, gg, og = gates[t, b, j], gates[t, b, H + j], gates[t, b, 2 * H + j], \
                gates[t, b, 3 * H + j]
            dcj = dc[b, j] + dhj * og * (one - th * th)
            gxg[t, b, j] = dg[t, b, j] = dcj * gg * ig * (one - ig)
            gxg[t, b, H + j] = dg[t, b, H + j] = dcj * cp * fg * (one - fg)
            gxg[t, b, 2 * H + j] = dg[t, b, 2 * H + j] = dcj * ig * (one - gg * gg)
            gxg[t, b, 3 * H + j] = dg[t, b, 3 * H + j] = dhj * th * og * (one - og)
            dc[b, j] = dcj * fg
        elif mode == 3:  # gru
            r, z, n = gates[t, b, j], gates[t, b, H + j], gates[t, b, 2 * H + j]
            dpn = dhj * (one - z) * (one - n * n)
            gxg[t, b, j] = dg[t, b, j] = dpn * extra[t, b, j] * r * (one - r)
            gxg[t, b, H + j] = dg[t, b, H + j] = dhj * (hs - n) * z * (one - z)
            gxg[t, b, 2 * H + j] = dpn
            dg[t, b, 2 * H + j] = dpn * r
            dd[b, j] = dhj * z
        else:
            a = gates[t, b, j]
            if mode == 0:
                dx = dhj * (one - a * a)
            else:
                dx = dhj if a > zero else zero
            gxg[t, b, j] = dg[t, b, j] = dx
    cuda.syncthreads()  # this row's dg is complete (global writes are visible in the block)
    for k in range(tid, H, nt):
        s = dd[b, k] if mode == 3 else zero
        for gi in range(GH):
            s += dg[t, b, gi] * w_hh[gi, k]
        dh[b, k] = s


@jit
def _gemm_tn(a, m2, c, n, zero):
    """c (M, N) = a^T m2 with a (n, M), m2 (n, N): 16 x 16 output tiles, the n rows staged in
    16-row shared tiles (both loads coalesced along the tiles' columns)."""
    sa = cuda.shared.array((TS, TS), dtype=c.dtype)
    sb = cuda.shared.array((TS, TS), dtype=c.dtype)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    r0, c0 = cuda.blockIdx.y * TS, cuda.blockIdx.x * TS
    M, N = c.shape[0], c.shape[1]
    acc = zero
    for k0 in range(0, n, TS):
        kr = k0 + ty
        sa[ty, tx] = a[kr, r0 + tx] if kr < n and r0 + tx < M else zero
        sb[ty, tx] = m2[kr, c0 + tx] if kr < n and c0 + tx < N else zero
        cuda.syncthreads()
        for kk in range(TS):
            acc += sa[kk, ty] * sb[kk, tx]
        cuda.syncthreads()
    if r0 + ty < M and c0 + tx < N:
        c[r0 + ty, c0 + tx] = acc


@jit
def _colsum(a, out, n, zero):
    col = cuda.grid(1)
    if col < out.size:
        s = zero
        for r in range(n):
            s += a[r, col]
        out[col] = s


@jit
def _copy(src, dst):
    for e in range(cuda.grid(1), dst.size, cuda.gridsize(1)):
        dst[e] = src[e]


@jit
def _fill(a, val):
    for e in range(cuda.grid(1), a.size, cuda.gridsize(1)):
        a[e] = val


# ---- host side ---------------------------------------------------------------------------
def _dims(d) -> str:
    return "(" + ", ".join(str(x) for x in d) + ("," if len(d) == 1 else "") + ")"


class _Checker:
    """The CPU table's checks (csrc/cpu/rnn.cpp): dtype of ``ref``, shape, None-ness."""

    def __init__(self, op, ref):
        self.op, self.ref = op, ref

    def shape(self, a, name, d):
        check_same_dtype(self.ref, a, self.op, "xg", name)
        if tuple(a.shape) != tuple(d):
            raise ValueError(f"{self.op}: {name} of shape {_dims(tuple(a.shape))} must be "
                             f"{_dims(d)}")

    def opt(self, a, name, d, wanted, why):
        if a is not None and wanted:
            return self.shape(a, name, d)
        if a is not None:
            raise ValueError(f"{self.op}: {name} must be None {why}, got an array of shape "
                             f"{_dims(tuple(a.shape))}")
        if wanted:
            raise ValueError(f"{self.op}: {name} is required {why}")


def _derive(op, mode, xg, w_hh, out, direction):
    check_float(xg, op, "xg")
    if mode not in MODES:
        raise ValueError(f"{op}: mode must be 'rnn_tanh', 'rnn_relu', 'lstm' or 'gru', got "
                         f"'{mode}'")
    G = GATES[mode]
    if w_hh.ndim != 2 or w_hh.shape[1] < 1 or w_hh.shape[0] != G * w_hh.shape[1]:
        raise ValueError(f"{op}: w_hh of shape {_dims(tuple(w_hh.shape))} must be ({G}*H, H) "
                         f"with H >= 1 for mode '{mode}'")
    H = w_hh.shape[1]
    if xg.ndim != 3 or xg.shape[2] != G * H:
        raise ValueError(f"{op}: xg of shape {_dims(tuple(xg.shape))} must be (T, B, {G * H}) "
                         f"for w_hh of shape {_dims(tuple(w_hh.shape))}")
    T, B = xg.shape[0], xg.shape[1]
    if out.ndim != 3 or out.shape[0] != T or out.shape[1] != B or out.shape[2] not in (H, 2 * H):
        raise ValueError(f"{op}: out of shape {_dims(tuple(out.shape))} must be ({T}, {B}, "
                         f"D*{H}) with D = 1 or 2 directions")
    D = out.shape[2] // H
    direction = int(direction)
    if not 0 <= direction < D:
        raise ValueError(f"{op}: direction {direction} must be in [0, {D}) for out of shape "
                         f"{_dims(tuple(out.shape))}")
    return T, B, H, G, D, direction


def _lengths(op, lengths, B, T):
    if lengths is None:
        return None
    lengths = dev(lengths, op, "lengths")
    if np.dtype(lengths.dtype) != np.int64:
        raise TypeError(f"{op}: {describe(lengths, 'lengths')} must be int64")
    if lengths.ndim != 1 or lengths.shape[0] != B:
        raise ValueError(f"{op}: lengths of shape {_dims(tuple(lengths.shape))} must be ({B},), "
                         "one length per sequence")
    host = lengths.copy_to_host()  # B values: the range check needs them on the host
    bad = np.flatnonzero((host < 0) | (host > T))
    if bad.size:
        b = int(bad[0])
        raise IndexError(f"{op}: lengths[{b}] = {int(host[b])} is out of range [0, {T}]")
    return lengths


def _threads(H):
    # a power of two >= H, at most 128 (threads loop over the units beyond): a block below a
    # warp costs a whole warp on a GPU but few simulator threads
    t = 1
    while t < min(H, 128):
        t *= 2
    return t


def _launch_copy(src, dst):
    if dst.size:
        _copy[grid1d(dst.size)](flat(src), flat(dst))


def rnn_forward(mode, xg, w_hh, b_hh, h0, c0, lengths, out, h_n, c_n, gates, extra,
                direction) -> None:
    """One direction of one recurrent layer over the whole sequence (see the module doc)."""
    op = "rnn_forward"
    xg, w_hh, out = dev(xg, op, "xg"), dev(w_hh, op, "w_hh"), dev(out, op, "out")
    b_hh, c0 = dev(b_hh, op, "b_hh", True), dev(c0, op, "c0", True)
    h0, h_n = dev(h0, op, "h0"), dev(h_n, op, "h_n")
    c_n, gates = dev(c_n, op, "c_n", True), dev(gates, op, "gates", True)
    extra = dev(extra, op, "extra", True)
    T, B, H, G, D, direction = _derive(op, mode, xg, w_hh, out, direction)
    ck = _Checker(op, xg)
    lstm = mode == "lstm"
    ck.shape(xg, "xg", (T, B, G * H))
    ck.shape(w_hh, "w_hh", (G * H, H))
    if b_hh is not None:
        ck.shape(b_hh, "b_hh", (G * H,))
    ck.shape(h0, "h0", (B, H))
    ck.opt(c0, "c0", (B, H), lstm, "for lstm only")
    lengths = _lengths(op, lengths, B, T)
    ck.shape(out, "out", (T, B, D * H))
    ck.shape(h_n, "h_n", (B, H))
    ck.opt(c_n, "c_n", (B, H), lstm, "for lstm only")
    if gates is not None:
        ck.shape(gates, "gates", (T, B, G * H))
    ck.opt(extra, "extra", (T, B, H), gates is not None and G > 1,
           "exactly when gates are saved for lstm or gru")
    if B == 0:
        return
    t_ = np.dtype(xg.dtype).type
    shmem = H * np.dtype(xg.dtype).itemsize
    if shmem > SMEM:
        raise ValueError(f"{op}: hidden size {H} too large for the Numba CUDA table's shared "
                         "memory")
    _launch_copy(h0, h_n)  # the state is carried in h_n / c_n
    if lstm:
        _launch_copy(c0, c_n)
    nt = _threads(H)
    lens = lengths if lengths is not None else cuda.device_array(1, np.int64)
    args = (xg, w_hh, b_hh if b_hh is not None else flat(w_hh), b_hh is not None, lens,
            lengths is not None, h_n, c_n if lstm else h_n, out, direction * H,
            gates if gates is not None else xg, gates is not None,
            extra if extra is not None else out, extra is not None, t_(0), t_(1))
    rev = direction == 1
    for s in range(T):
        _fwd_step[B, nt, 0, shmem](MODES[mode], T - 1 - s if rev else s, T, *args)


def rnn_backward(mode, grad_out, grad_h_n, grad_c_n, w_hh, h0, c0, lengths, out, gates, extra,
                 grad_xg, grad_w_hh, grad_b_ih, grad_b_hh, grad_h0, grad_c0, direction) -> None:
    """Gradients of one direction of one recurrent layer (see the module doc)."""
    op = "rnn_backward"
    grad_out = dev(grad_out, op, "grad_out", True)
    grad_h_n, grad_c_n = dev(grad_h_n, op, "grad_h_n", True), dev(grad_c_n, op, "grad_c_n", True)
    w_hh, h0, c0 = dev(w_hh, op, "w_hh"), dev(h0, op, "h0"), dev(c0, op, "c0", True)
    out, gates, extra = dev(out, op, "out"), dev(gates, op, "gates"), dev(extra, op, "extra", True)
    grad_xg, grad_w_hh = dev(grad_xg, op, "grad_xg"), dev(grad_w_hh, op, "grad_w_hh")
    grad_b_ih, grad_b_hh = dev(grad_b_ih, op, "grad_b_ih", True), dev(grad_b_hh, op,
                                                                      "grad_b_hh", True)
    grad_h0, grad_c0 = dev(grad_h0, op, "grad_h0"), dev(grad_c0, op, "grad_c0", True)
    T, B, H, G, D, direction = _derive(op, mode, grad_xg, w_hh, out, direction)
    ck = _Checker(op, grad_xg)
    lstm, gru, GH = mode == "lstm", mode == "gru", G * H
    if grad_out is not None:
        ck.shape(grad_out, "grad_out", (T, B, D * H))
    if grad_h_n is not None:
        ck.shape(grad_h_n, "grad_h_n", (B, H))
    if grad_c_n is not None:
        ck.opt(grad_c_n, "grad_c_n", (B, H), lstm, "for lstm only")
    ck.shape(w_hh, "w_hh", (GH, H))
    ck.shape(h0, "h0", (B, H))
    ck.opt(c0, "c0", (B, H), lstm, "for lstm only")
    lengths = _lengths(op, lengths, B, T)
    ck.shape(out, "out", (T, B, D * H))
    ck.shape(gates, "gates", (T, B, GH))
    ck.opt(extra, "extra", (T, B, H), G > 1, "for lstm and gru only")
    ck.shape(grad_xg, "grad_xg", (T, B, GH))
    ck.shape(grad_w_hh, "grad_w_hh", (GH, H))
    if grad_b_ih is not None:
        ck.shape(grad_b_ih, "grad_b_ih", (GH,))
    if grad_b_hh is not None:
        ck.shape(grad_b_hh, "grad_b_hh", (GH,))
    ck.shape(grad_h0, "grad_h0", (B, H))
    if grad_c0 is not None:
        ck.opt(grad_c0, "grad_c0", (B, H), lstm, "for lstm only")
    t_ = np.dtype(grad_xg.dtype).type
    zero, one = t_(0), t_(1)
    # carried gradients: dh lives in grad_h0, dc in grad_c0 (or scratch), both updated in place
    dh = grad_h0
    dc = (grad_c0 if grad_c0 is not None else cuda.device_array((B, H), grad_xg.dtype)) \
        if lstm else grad_h0
    for dst, src in ((dh, grad_h_n), (dc, grad_c_n if lstm else grad_h_n)):
        if src is not None:
            _launch_copy(src, dst)
        elif dst.size:
            _fill[grid1d(dst.size)](flat(dst), zero)
    # GRU's hidden-side gate gradients differ from dxg (n block scaled by r): own buffer
    dg = cuda.device_array((T, B, GH), grad_xg.dtype) if gru else grad_xg
    dd = cuda.device_array((B, H), grad_xg.dtype) if gru else grad_h0  # gru: dh * z
    hp = cuda.device_array((T, B, H), grad_xg.dtype)  # h_{t-1} of every step, for d W_hh
    if B > 0:
        nt = _threads(H)
        lens = lengths if lengths is not None else cuda.device_array(1, np.int64)
        rev = direction == 1
        args = (T, rev, grad_out if grad_out is not None else out, grad_out is not None, w_hh,
                h0, c0 if lstm else h0, lens, lengths is not None, out, direction * H, gates,
                extra if extra is not None else out, dh, dc, grad_xg, dg, dd, hp, zero, one)
        for s in range(T):
            _bwd_step[B, nt](MODES[mode], s if rev else T - 1 - s, *args)
    TB = T * B
    grid = (-(-H // TS), -(-GH // TS))
    _gemm_tn[grid, (TS, TS)](dg.reshape(TB, GH), hp.reshape(TB, H), grad_w_hh, TB, zero)
    for dst, src in ((grad_b_ih, grad_xg), (grad_b_hh, dg)):
        if dst is not None:
            _colsum[grid1d(GH, 128)](src.reshape(TB, GH), dst, TB, zero)
