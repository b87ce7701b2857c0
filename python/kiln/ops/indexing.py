"""Indexing: ``x[idx]`` (basic, integer-array and boolean, with gradients) and the
out-of-place ``index_put`` behind ``x[idx] = v``.

The gradient of ``x[idx]`` scatters g back into zeros of x's shape (``np.add.at`` for
advanced indices, so repeated indices accumulate); index_put sends g[idx] to v and g
with idx zeroed to x. Integer indices are bounds-checked up front for a clear IndexError.
"""

from __future__ import annotations

import numpy as np

from kiln.autograd import Function
from kiln.ops._util import sum_to, wrap
from kiln.tensor import Tensor


def _convert_index(idx, shape):
    """Tensors in an index become arrays; checks integer-array bounds for a clear IndexError."""
    if not isinstance(idx, tuple):
        idx = (idx,)
    out = []
    dim = 0
    for k in idx:
        if isinstance(k, Tensor):
            k = k.data
        if isinstance(k, list):
            k = np.asarray(k)
        if isinstance(k, np.ndarray):
            if k.dtype.kind == "b":
                dim += k.ndim
            elif k.dtype.kind in "iu":
                if dim < len(shape) and k.size:
                    n = shape[dim]
                    if k.max() >= n or k.min() < -n:
                        bad = k.max() if k.max() >= n else k.min()
                        raise IndexError(
                            f"index {int(bad)} is out of bounds for dimension {dim} with size {n}"
                        )
                dim += 1
            else:
                raise IndexError(
                    f"tensors used as indices must be long, int or bool tensors, got {k.dtype}"
                )
        elif k is None:
            pass
        elif k is Ellipsis:
            dim = len(shape) - sum(
                1 for j in idx if j is not None and j is not Ellipsis
                and not (isinstance(j, (np.ndarray, Tensor)) and np.asarray(
                    j.data if isinstance(j, Tensor) else j).dtype.kind == "b")
            )
        else:
            if isinstance(k, (int, np.integer)) and dim < len(shape):
                n = shape[dim]
                if not -n <= k < n:
                    raise IndexError(
                        f"index {k} is out of bounds for dimension {dim} with size {n}"
                    )
            dim += 1
        out.append(k)
    return tuple(out)


def _is_basic(idx):
    return all(k is None or k is Ellipsis or isinstance(k, (int, np.integer, slice)) for k in idx)


class Index(Function):
    needs_inputs = False

    @staticmethod
    def forward(ctx, x, idx):
        ctx.meta = (x.shape, x.dtype, idx)
        return x[idx]

    @staticmethod
    def backward(ctx, g):
        shape, dt, idx = ctx.meta
        out = np.zeros(shape, dtype=g.data.dtype)
        if _is_basic(idx):
            out[idx] = g.data
        else:
            np.add.at(out, idx, g.data)  # repeated indices accumulate
        return wrap(out), None

    once_differentiable = True


def index(x, idx):
    try:
        idx = _convert_index(idx, x.data.shape)
        return Index.apply(x, idx)
    except IndexError as e:
        raise IndexError(f"index: {e} (tensor of shape {tuple(x.data.shape)})") from None


class IndexPut(Function):
    """out = x with out[idx] = v; grads: x gets g with idx zeroed, v gets g[idx]."""

    needs_inputs = False

    once_differentiable = True

    @staticmethod
    def forward(ctx, x, idx, v):
        out = x.copy()
        out[idx] = v
        ctx.idx = idx
        ctx.vshape = np.shape(v)
        return out

    @staticmethod
    def backward(ctx, g):
        gx = g.data.copy()
        gx[ctx.idx] = 0
        gv = None
        if ctx.vshape is not None and isinstance(ctx.inputs[2], Tensor):
            gv = sum_to(wrap(np.ascontiguousarray(g.data[ctx.idx])), ctx.vshape)
        return wrap(gx), None, gv


def index_put(x, idx, v):
    idx = _convert_index(idx, x.data.shape)
    return IndexPut.apply(x, idx, v)
