"""Recurrent layers as graph ops: one ``RnnLayer`` Function per layer (all its directions)
over the compiled time loops ``rnn_forward`` / ``rnn_backward``.

Per direction d of a layer (PyTorch's formulas and gate orders; see csrc/cpu/rnn_loop.cpp):
  forward:  xg = x W_ih^T + b_ih for all T steps in one GEMM (T*B, G*H), then the kernel's
            time loop (one GEMM h W_hh^T + b_hh and one fused cell update per step);
  backward: the kernel's reverse loop gives dxg (= d b_ih), d W_hh, d b_hh, d h0, d c0;
            then d x = dxg W_ih and d W_ih = dxg^T x are two big GEMMs.

A Function has one output, so a layer returns one flat array
``[out (T, B, D*H) | h_n (D, B, H) | c_n (D, B, H) (lstm)]`` which ``rnn_layer`` splits with
``narrow`` (views, no copy); the gradients of the pieces meet again in that flat array.

``lengths`` (kiln addition): sequence b takes only its first lengths[b] steps; outputs at
padded steps are zero and h_n / c_n hold each sequence's state after its own last step --
PyTorch's ``pack_padded_sequence(enforce_sorted=False)`` -> RNN -> ``pad_packed_sequence``.
"""

from __future__ import annotations

import math

import numpy as np

from kiln.autograd import Function, is_grad_enabled
from kiln.ops._util import contig, kernels
from kiln.ops.movement import contiguous, narrow, reshape
from kiln.tensor import Tensor

MODES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}


class RnnLayer(Function):
    """One layer, D directions. Arguments: mode, lengths (int64 array or None), save (keep
    what backward needs), x (T, B, I), h0 (D, B, H), c0 (D, B, H) or None, then per
    direction w_ih (G*H, I), w_hh (G*H, H), b_ih, b_hh ((G*H,) or None)."""

    once_differentiable = True
    saves_output = True

    @staticmethod
    def forward(ctx, mode, lengths, save, x, h0, c0, *weights):
        T, B, In = x.shape
        D, H = h0.shape[0], h0.shape[2]
        G = MODES[mode]
        lstm = mode == "lstm"
        n = T * B * D * H
        flat = np.empty(n + D * B * H * (2 if lstm else 1), dtype=x.dtype)
        out = flat[:n].reshape(T, B, D * H)
        h_n = flat[n:n + D * B * H].reshape(D, B, H)
        c_n = flat[n + D * B * H:].reshape(D, B, H) if lstm else None
        x2 = x.reshape(T * B, In)
        k = kernels(x)
        ctx.saved_dirs = []
        for d in range(D):
            w_ih, w_hh, b_ih, b_hh = weights[4 * d:4 * d + 4]
            xg = np.empty((T * B, G * H), dtype=x.dtype)
            k.matmul(x2, w_ih, xg, False, True, b_ih, "none")
            gates = np.empty((T, B, G * H), dtype=x.dtype) if save else None
            extra = np.empty((T, B, H), dtype=x.dtype) if save and G > 1 else None
            k.rnn_forward(mode, xg.reshape(T, B, G * H), w_hh, b_hh, h0[d],
                          c0[d] if lstm else None, lengths, out, h_n[d],
                          c_n[d] if lstm else None, gates, extra, d)
            ctx.saved_dirs.append((gates, extra))
        ctx.out = out
        return flat

    @staticmethod
    def backward(ctx, g):
        mode, lengths, _, x, h0, c0, *weights = ctx.inputs
        xd, h0d = x.data, h0.data
        T, B, In = xd.shape
        D, H = h0d.shape[0], h0d.shape[2]
        G = MODES[mode]
        lstm = mode == "lstm"
        n = T * B * D * H
        gd = contig(g.data)
        g_out = gd[:n].reshape(T, B, D * H)
        g_hn = gd[n:n + D * B * H].reshape(D, B, H)
        g_cn = gd[n + D * B * H:].reshape(D, B, H) if lstm else None
        x2 = xd.reshape(T * B, In)
        k = kernels(gd)
        want_x = x.requires_grad
        gx = np.empty((T * B, In), dtype=xd.dtype) if want_x else None
        gh0 = np.empty_like(h0d)
        gc0 = np.empty_like(h0d) if lstm else None
        gw = []
        for d in range(D):
            w_ih, w_hh, b_ih, b_hh = weights[4 * d:4 * d + 4]
            gates, extra = ctx.saved_dirs[d]
            gxg = np.empty((T * B, G * H), dtype=xd.dtype)
            gw_hh = np.empty_like(w_hh.data)
            gb_ih = np.empty((G * H,), xd.dtype) if b_ih is not None else None
            gb_hh = np.empty((G * H,), xd.dtype) if b_hh is not None else None
            k.rnn_backward(mode, g_out, g_hn[d], g_cn[d] if lstm else None, w_hh.data,
                           h0d[d], c0.data[d] if lstm else None, lengths, ctx.out, gates, extra,
                           gxg.reshape(T, B, G * H), gw_hh, gb_ih, gb_hh, gh0[d],
                           gc0[d] if lstm else None, d)
            gw_ih = None
            if w_ih.requires_grad:
                gw_ih = np.empty_like(w_ih.data)
                k.matmul(gxg, x2, gw_ih, True, False, None, "none")
            if want_x:
                if d == 0:
                    k.matmul(gxg, w_ih.data, gx, False, False, None, "none")
                else:
                    tmp = np.empty_like(gx)
                    k.matmul(gxg, w_ih.data, tmp, False, False, None, "none")
                    gx += tmp
            gw += [gw_ih, gw_hh, gb_ih, gb_hh]
        gx = gx.reshape(T, B, In) if want_x else None
        return (None, None, None, gx, gh0, gc0, *gw)


def check_lengths(lengths, T: int, B: int, op: str) -> np.ndarray | None:
    """``lengths`` (Tensor, array or sequence of ints) -> contiguous int64 (B,) in [0, T]."""
    if lengths is None:
        return None
    arr = lengths.data if isinstance(lengths, Tensor) else np.asarray(lengths)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{op}: lengths must hold integers, got dtype {arr.dtype}")
    if arr.shape != (B,):
        raise ValueError(
            f"{op}: lengths of shape {tuple(arr.shape)} must be ({B},), one per sequence")
    if B and (arr.min() < 0 or arr.max() > T):
        bad = int(arr[(arr < 0) | (arr > T)][0])
        raise ValueError(f"{op}: lengths must be in [0, {T}] for a sequence of {T} steps, "
                         f"got {bad}")
    return np.ascontiguousarray(arr, dtype=np.int64)


def rnn_layer(mode: str, x: Tensor, h0: Tensor, c0: Tensor | None, weights, lengths=None):
    """One recurrent layer, all directions: x (T, B, I), h0 / c0 (D, B, H), weights a list
    of D tuples (w_ih, w_hh, b_ih, b_hh) (biases may be None); lengths an int64 array (B,)
    or None. Returns (out (T, B, D*H), h_n (D, B, H), c_n (D, B, H) or None).

    >>> import kiln
    >>> x = kiln.randn(5, 2, 3)
    >>> w = (kiln.randn(4, 3), kiln.randn(4, 4), None, None)
    >>> out, h_n, _ = rnn_layer("rnn_tanh", x, kiln.zeros(1, 2, 4), None, [w])
    >>> tuple(out.shape), tuple(h_n.shape)
    ((5, 2, 4), (1, 2, 4))
    """
    if mode not in MODES:
        raise ValueError(f"rnn_layer: mode must be one of {list(MODES)}, got {mode!r}")
    T, B, _ = x.data.shape
    D, H = h0.data.shape[0], h0.data.shape[2]
    flat_w = [w for ws in weights for w in ws]
    save = is_grad_enabled() and any(
        isinstance(t, Tensor) and t.requires_grad for t in (x, h0, c0, *flat_w))
    args = [contig_t(x), contig_t(h0), contig_t(c0) if c0 is not None else None]
    args += [contig_t(w) if w is not None else None for w in flat_w]
    flat = RnnLayer.apply(mode, lengths, save, *args)
    n = T * B * D * H
    out = reshape(narrow(flat, 0, 0, n), (T, B, D * H))
    h_n = reshape(narrow(flat, 0, n, D * B * H), (D, B, H))
    c_n = reshape(narrow(flat, 0, n + D * B * H, D * B * H), (D, B, H)) \
        if mode == "lstm" else None
    return out, h_n, c_n


def contig_t(t: Tensor) -> Tensor:
    if t.data.flags.c_contiguous:
        return t
    return contiguous(t)


def init_bound(hidden_size: int) -> float:
    """PyTorch's default init range for every recurrent weight: U(-1/sqrt(H), 1/sqrt(H))."""
    return 1.0 / math.sqrt(hidden_size) if hidden_size > 0 else 0.0


__all__ = ["RnnLayer", "rnn_layer", "check_lengths", "MODES"]
