"""matmul (batched, broadcast batch dims, transposes read in place) and linear with the
fused bias + activation epilogue of the GEMM kernel.

Gradients: for C = A B,  dA = dC B^T,  dB = A^T dC, summed over broadcast batch dims.
They are themselves matmuls of transposed *views*, which the kernel reads in place
(trans flags), so backward makes no transposed copies and is differentiable again.
"""

from __future__ import annotations

import math

import numpy as np

from kiln import _cpu
from kiln.autograd import Function, is_grad_enabled
from kiln.grad_mode import _mode
from kiln.ops import elementwise as ew
from kiln.ops._util import kernels, sum_to, wrap
from kiln.ops.activation import gelu
from kiln.ops.movement import reshape, transpose, unsqueeze
from kiln.ops.reduce import sum as _sum
from kiln.tensor import Tensor, _wrap

_ndarray = np.ndarray
_empty = np.empty
_new = object.__new__
_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)


def _operand(m: np.ndarray):
    """(contiguous array, transposed?) for the last two dims: a transposed view is
    passed as its contiguous original plus trans=True instead of being copied."""
    if m.flags.c_contiguous:
        return m, False
    mt = np.swapaxes(m, -1, -2)
    if mt.flags.c_contiguous:
        return mt, True
    return np.ascontiguousarray(m), False


def _batched(x: np.ndarray, batch: tuple, nb: int):
    """Reshape ``x`` (..., r, c) to (Bx, r, c) with Bx in {1, nb}; copies only for partial
    broadcasts such as (2, 1) against (1, 3)."""
    xb = x.shape[:-2]
    if math.prod(xb) == 1:
        arr, tr = _operand(x.reshape(x.shape[-2:]))
        return arr.reshape((1,) + arr.shape), tr
    if xb != batch:
        x = np.broadcast_to(x, batch + x.shape[-2:])
    arr, tr = _operand(x)
    return arr.reshape((nb,) + arr.shape[-2:]), tr


def _check(a, b, op):
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(
            f"{op}: both arguments need at least 1 dimension, got shapes {tuple(a.shape)} and "
            f"{tuple(b.shape)}"
        )
    ka = a.shape[-1]
    kb = b.shape[-2] if b.ndim > 1 else b.shape[0]
    if ka != kb:
        raise ValueError(
            f"{op}: shapes {tuple(a.shape)} and {tuple(b.shape)} cannot be multiplied "
            f"({ka} != {kb})"
        )
    if a.dtype != b.dtype:
        raise TypeError(
            f"{op}: expected both operands to have the same dtype, got {a.dtype} (shape "
            f"{tuple(a.shape)}) and {b.dtype} (shape {tuple(b.shape)})"
        )


def matmul_arrays(a: np.ndarray, b: np.ndarray, bias=None, activation="none") -> np.ndarray:
    """a @ b on arrays through the GEMM kernel (NumPy semantics for 1-D and batch dims)."""
    sa, sb, dt = a.shape, b.shape, a.dtype
    if len(sa) == 2 and len(sb) == 2 and sa[1] == sb[0] and dt is b.dtype and (
            dt is _F32 or dt is _F64):
        # the common case first, with nothing else on the path: per-op cost matters
        # (each attribute read here is ~50 ns against a 0.6 us 16^3 product)
        ta = tb = False
        if not a.flags.c_contiguous:
            a, ta = (a.T, True) if a.flags.f_contiguous else (np.ascontiguousarray(a), False)
        if not b.flags.c_contiguous:
            b, tb = (b.T, True) if b.flags.f_contiguous else (np.ascontiguousarray(b), False)
        out = _empty((sa[0], sb[1]), dt)
        if bias is None and activation == "none":
            (_cpu if type(a) is _ndarray else kernels(a)).matmul(a, b, out, ta, tb)
        else:
            (_cpu if type(a) is _ndarray else kernels(a)).matmul(a, b, out, ta, tb, bias,
                                                                 activation)
        return out
    if len(sa) == 3 and len(sb) == 3 and sa[0] == sb[0] and sa[2] == sb[1] and dt is b.dtype \
            and dt.kind == "f" and a.flags.c_contiguous and b.flags.c_contiguous:
        # bmm of equal batches: no broadcasting to work out
        out = np.empty((sa[0], sa[1], sb[2]), dt)
        k = _cpu if type(a) is _ndarray else kernels(a)
        if bias is None and activation == "none":
            k.matmul(a, b, out, False, False)
        else:
            k.matmul(a, b, out, False, False, bias, activation)
        return out
    _check(a, b, "matmul")
    if a.dtype.kind != "f":
        return np.matmul(a, b)
    va, vb = a.ndim == 1, b.ndim == 1
    if va:
        a = a[None, :]
    if vb:
        b = b[:, None]
    K = kernels(a)
    M, N = a.shape[-2], b.shape[-1]
    if b.ndim == 2 and a.ndim > 2 and a.flags.c_contiguous:
        # (..., M, K) @ (K, N): one GEMM over all rows
        bb, tb = _operand(b)
        out = np.empty(a.shape[:-1] + (N,), dtype=a.dtype)
        rows = out.size // N if N else math.prod(a.shape[:-1])
        K.matmul(a.reshape(rows, a.shape[-1]), bb, out.reshape(rows, N), False, tb, bias,
                 activation)
    elif a.ndim == 2 and b.ndim == 2:
        aa, ta = _operand(a)
        bb, tb = _operand(b)
        out = np.empty((M, N), dtype=a.dtype)
        K.matmul(aa, bb, out, ta, tb, bias, activation)
    else:
        try:
            batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        except ValueError:
            raise ValueError(
                f"matmul: batch dimensions of {tuple(a.shape)} and {tuple(b.shape)} cannot be "
                "broadcast together"
            ) from None
        nb = math.prod(batch)
        aa, ta = _batched(a, batch, nb) if a.ndim > 2 else (*_operand(a),)
        bb, tb = _batched(b, batch, nb) if b.ndim > 2 else (*_operand(b),)
        out = np.empty(batch + (M, N), dtype=a.dtype)
        if nb:
            K.matmul(aa, bb, out.reshape((nb, M, N)), ta, tb, bias, activation)
    if va:
        out = out[..., 0, :]
    if vb:
        out = out[..., 0]
    return out


class Matmul(Function):
    @staticmethod
    def forward(ctx, a, b):
        return matmul_arrays(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.inputs
        ad, bd = a.data, b.data
        if ad.ndim == 1 and bd.ndim == 1:
            return (ew.mul(g, b) if a.requires_grad else None,
                    ew.mul(g, a) if b.requires_grad else None)
        # lift vectors to matrices so one formula serves every case
        A = a if ad.ndim > 1 else unsqueeze(a, 0)
        B = b if bd.ndim > 1 else unsqueeze(b, -1)
        G = unsqueeze(g, -2) if ad.ndim == 1 else g
        G = unsqueeze(G, -1) if bd.ndim == 1 else G
        ga = gb = None
        if a.requires_grad:
            ga = sum_to(matmul(G, _mT(B)), A.data.shape)
            ga = reshape(ga, ad.shape) if ad.ndim == 1 else ga
        if b.requires_grad:
            if B.data.ndim == 2 and G.data.ndim > 2 and A.data.shape[:-2] == G.data.shape[:-2]:
                # (..., M, K) x (K, N): the batch sum is one GEMM over all rows
                k, n = A.data.shape[-1], G.data.shape[-1]
                rows = _rows(A.data.shape)
                gb = matmul(_mT(reshape(A, (rows, k))), reshape(G, (rows, n)))
            else:
                gb = sum_to(matmul(_mT(A), G), B.data.shape)
            gb = reshape(gb, bd.shape) if bd.ndim == 1 else gb
        return ga, gb


def _rows(shape) -> int:
    """Rows of the (rows, last) matrix view of ``shape`` (``-1`` is ambiguous when empty)."""
    n = 1
    for d in shape[:-1]:
        n *= d
    return n


def _mT(x):
    return transpose(x, -1, -2)


def matmul(a, b):
    """Matrix product with NumPy/PyTorch semantics (1-D vectors, broadcast batch dims).

    >>> import kiln
    >>> (kiln.ones(2, 3) @ kiln.ones(3, 4)).shape
    kiln.Size([2, 4])
    >>> kiln.matmul(kiln.ones(5, 2, 3), kiln.ones(3)).shape
    kiln.Size([5, 2])
    """
    if type(a) is not Tensor or type(b) is not Tensor:
        raise TypeError(
            f"matmul: expected Tensors, got {type(a).__name__} and {type(b).__name__}"
        )
    if not (a.requires_grad or b.requires_grad) or not _mode.grad:
        if not _mode.anomaly:
            # nothing to record: skip the graph node (~1.5 us, a third of a 64^3 product),
            # and _wrap inlined (a call is ~0.1 us, 2% of a 64^3 product)
            t = _new(Tensor)
            t.data = matmul_arrays(a.data, b.data)
            t.requires_grad = False
            t.grad = t.grad_fn = t._hooks = None
            t._version = 0
            return t
    return Matmul.apply(a, b)


def mm(a, b):
    if a.data.ndim != 2 or b.data.ndim != 2:
        raise ValueError(f"mm: expected 2-D tensors, got {tuple(a.shape)} and {tuple(b.shape)}")
    return matmul(a, b)


def bmm(a, b):
    if a.data.ndim != 3 or b.data.ndim != 3 or a.data.shape[0] != b.data.shape[0]:
        raise ValueError(
            f"bmm: expected 3-D tensors with equal batch, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    return matmul(a, b)


def _check_linear(xs, dt, w, b) -> None:
    """Raise linear's errors for an input of shape ``xs`` and dtype ``dt``."""
    ws = w.shape
    if len(xs) == 0 or len(ws) != 2 or xs[-1] != ws[1]:
        raise ValueError(
            f"linear: input of shape {tuple(xs)} and weight of shape {tuple(ws)} "
            f"don't match (expected input[..., {ws[1] if len(ws) == 2 else '?'}] and "
            "weight (out_features, in_features))"
        )
    if b is not None and (b.ndim != 1 or b.shape[0] != ws[0]):
        raise ValueError(
            f"linear: bias of shape {tuple(b.shape)} doesn't match weight of shape "
            f"{tuple(ws)}"
        )
    if (w.dtype is not dt and w.dtype != dt) or (
            b is not None and b.dtype is not dt and b.dtype != dt):
        raise TypeError(
            f"linear: dtype mismatch: input {dt}, weight {w.dtype}"
            + (f", bias {b.dtype}" if b is not None else "")
        )


class Linear(Function):
    """y = act(x W^T + b) in one GEMM call (bias and relu applied in the kernel's write-back)."""

    saves_output = True  # the relu mask is read from the output

    @staticmethod
    def forward(ctx, x, w, b, activation):
        xs, ws, dt = x.shape, w.shape, x.dtype  # read once: each read builds a new object
        _check_linear(xs, dt, w, b)
        x2 = x.reshape(_rows(xs), xs[-1]) if len(xs) != 2 else x
        x2 = x2 if x2.flags.c_contiguous else np.ascontiguousarray(x2)
        ww, tw = (w, False) if w.flags.c_contiguous else _operand(w)
        out = _empty((x2.shape[0], ws[0]), dt)
        (_cpu if type(x2) is _ndarray else kernels(x2)).matmul(x2, ww, out, False, not tw, b,
                                                               activation)
        ctx.act = activation
        ctx.out = out if activation == "relu" else None
        return out if len(xs) == 2 else out.reshape(xs[:-1] + (ws[0],))

    @staticmethod
    def backward(ctx, g):
        x, w, b, _ = ctx.inputs
        if not _mode.grad:  # plain backward: on arrays
            return _linear_backward_raw(ctx, g.data, x, w, b)
        # create_graph: the same formula as recorded kiln ops (double backward)
        if ctx.act == "relu":
            g = ew.mul(g, wrap((ctx.out > 0).astype(g.data.dtype).reshape(g.data.shape)))
        g2 = reshape(g, (_rows(g.data.shape), g.data.shape[-1]))
        gx = reshape(matmul(g2, w), x.data.shape) if x.requires_grad else None
        gw = None
        if w.requires_grad:
            x2 = reshape(x, (_rows(x.data.shape), x.data.shape[-1]))
            gw = matmul(_mT(g2), x2)
        gb = None
        if b is not None and b.requires_grad:
            gb = _sum(g2, 0)
        return gx, gw, gb, None


_ones_cache: dict = {}


def _column_sums(g2: np.ndarray) -> np.ndarray:
    """Sums over the rows of a C-contiguous (rows, n) array, as a 1 x rows GEMV through the
    GEMM kernel: ~3x faster than np.add.reduce(g2, 0) at a Linear layer's (128, 256)."""
    key = (g2.shape[0], g2.dtype)
    ones = _ones_cache.get(key)
    if ones is None:
        if len(_ones_cache) > 64:
            _ones_cache.clear()
        ones = _ones_cache[key] = np.ones((1, g2.shape[0]), g2.dtype)
    out = np.empty((1, g2.shape[1]), g2.dtype)
    kernels(g2).matmul(ones, g2, out, False, False)
    return out.reshape(g2.shape[1])


def _linear_backward_raw(ctx, gd, x, w, b):
    """Linear's plain backward (no create_graph) on arrays: the same three GEMMs and the
    fused relu mask as the Tensor-level formula, without a Tensor, reshape or transpose
    node per step (~30 us a layer, a tenth of an MLP's non-GEMM time)."""
    gs = gd.shape
    n_out = gs[-1]
    g2 = gd.reshape(_rows(gs), n_out) if len(gs) != 2 else gd
    if not g2.flags.c_contiguous:
        g2 = np.ascontiguousarray(g2)
    k = _cpu if type(g2) is _ndarray else kernels(g2)
    if ctx.act == "relu":  # one fused pass: g * (out > 0)
        gi = _empty(g2.shape, g2.dtype)
        k.relu_backward(g2, ctx.out, gi)
        g2 = gi
    gx = gw = gb = None
    xd, wd = x.data, w.data
    dt = g2.dtype
    if x.requires_grad:
        if wd.flags.c_contiguous and wd.dtype is dt:  # straight to the kernel
            gxd = _empty((g2.shape[0], wd.shape[1]), dt)
            k.matmul(g2, wd, gxd, False, False)
        else:
            gxd = matmul_arrays(g2, wd)
        gx = _wrap(gxd if len(xd.shape) == 2 else gxd.reshape(xd.shape))
        gx._fresh = True  # a new buffer: the engine may adopt it as .grad (see fresh)
    if w.requires_grad:
        x2 = xd.reshape(_rows(xd.shape), xd.shape[-1]) if len(xd.shape) != 2 else xd
        if x2.flags.c_contiguous and x2.dtype is dt:  # trans_a: g2 read in place
            gwd = _empty((n_out, x2.shape[1]), dt)
            k.matmul(g2, x2, gwd, True, False)
        else:
            gwd = matmul_arrays(g2.T, x2)
        gw = _wrap(gwd)
        gw._fresh = True
    if b is not None and b.requires_grad:
        gb = _wrap(_column_sums(g2) if g2.shape[0] else np.zeros(n_out, g2.dtype))
        gb._fresh = True
    return gx, gw, gb, None


def linear(input, weight, bias=None, activation=None):  # noqa: A002
    """``input @ weight.T + bias``, optionally followed by ``activation`` in the same kernel.

    ``activation`` is kiln's addition ("relu", "gelu", "gelu_tanh"): relu is fused in
    training too; gelu is fused when no gradient is needed, else applied as its own op.

    >>> import kiln
    >>> w = kiln.tensor([[1.0, -1.0]])
    >>> linear(kiln.tensor([[2.0, 3.0]]), w, kiln.tensor([0.5]), activation="relu")
    tensor([[0.]])
    """
    act = activation or "none"
    if act in ("gelu", "gelu_tanh") and is_grad_enabled() and (
        input.requires_grad or weight.requires_grad or (bias is not None and bias.requires_grad)
    ):
        return gelu(Linear.apply(input, weight, bias, "none"),
                    approximate="tanh" if act == "gelu_tanh" else "none")
    if act not in ("none", "relu", "gelu", "gelu_tanh"):
        raise ValueError(f"linear: unknown activation {activation!r} (relu, gelu, gelu_tanh)")
    return Linear.apply(input, weight, bias, act)
