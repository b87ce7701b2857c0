"""Reductions: sum, mean, var, std, max, min, amax, amin, argmax, argmin, prod, logsumexp.

Gradients: d sum = broadcast g; d mean = g / n; d max(dim) = g scattered to the
arg-max index (first of ties, like PyTorch); d max() over all elements = g split
evenly among the tied maxima; d prod = g * (product of the other elements),
computed from exclusive prefix/suffix products so zeros are exact;
logsumexp = m + log(sum(exp(x - m))) with m the (detached) max.
"""

from __future__ import annotations

import builtins
import collections

import numpy as np

from kiln.autograd import Function
from kiln.ops import elementwise as ew
from kiln.ops._util import raw, wrap
from kiln.ops.movement import expand, reshape
from kiln.tensor import Tensor, _norm_dim

values_indices = collections.namedtuple("values_indices", ["values", "indices"])


def _dims(dim, ndim, op):
    if dim is None:
        return None
    if isinstance(dim, (list, tuple)):
        out = tuple(sorted({_norm_dim(d, ndim, op) for d in dim}))
        return out if out or ndim == 0 else None
    return (_norm_dim(dim, ndim, op),)


def _expand_back(g: Tensor, shape, dims, keepdim):
    """Broadcast a reduced gradient back to the input's shape (differentiably)."""
    if not keepdim:
        kshape = list(shape)
        for d in dims if dims is not None else range(len(shape)):
            kshape[d] = 1
        g = reshape(g, tuple(kshape))
    return expand(g, shape)


class Sum(Function):
    needs_inputs = False

    @staticmethod
    def forward(ctx, x, dims, keepdim):
        ctx.meta = (x.shape, dims, keepdim)
        # the ndarray method skips np.sum's Python-level wrapper (~1.5 us per call)
        if x.dtype.kind in "bi":
            return x.sum(axis=dims, keepdims=keepdim, dtype=np.int64)
        return x.sum(axis=dims, keepdims=keepdim)

    @staticmethod
    def backward(ctx, g):
        shape, dims, keepdim = ctx.meta
        if raw():
            gd = g.data
            if not keepdim and dims is not None:
                gd = np.expand_dims(gd, dims)
            out = np.empty(shape, dtype=gd.dtype)  # np.broadcast_to costs ~5 us per call
            np.copyto(out, gd)
            return wrap(out), None, None
        return _expand_back(g, shape, dims, keepdim), None, None


def sum(x, dim=None, keepdim=False, dtype=None):  # noqa: A001
    out = Sum.apply(x, _dims(dim, x.data.ndim, "sum"), keepdim)
    return out if dtype is None else out.to(dtype)


def _count(x, dims):
    if dims is None:
        return x.data.size
    n = 1
    for d in dims:
        n *= x.data.shape[d]
    return n


def mean(x, dim=None, keepdim=False, dtype=None):
    if x.data.dtype.kind != "f" and dtype is None:
        raise TypeError(
            f"mean: could not infer output dtype; input of shape {tuple(x.data.shape)} is "
            f"{x.dtype}, not floating point (pass dtype= or convert with .float())"
        )
    if dtype is not None:
        x = x.to(dtype)
    dims = _dims(dim, x.data.ndim, "mean")
    return ew.div(Sum.apply(x, dims, keepdim), float(_count(x, dims)) or float("nan"))


def var(x, dim=None, unbiased=None, keepdim=False, *, correction=None):
    if correction is None:
        correction = 1 if unbiased is None or unbiased else 0
    dims = _dims(dim, x.data.ndim, "var")
    m = Sum.apply(x, dims, True)
    n = _count(x, dims)
    d = ew.sub(x, ew.div(m, float(n)))
    ss = Sum.apply(ew.mul(d, d), dims, keepdim)
    return ew.div(ss, float(builtins.max(n - correction, 0)))


def std(x, dim=None, unbiased=None, keepdim=False, *, correction=None):
    return ew.sqrt(var(x, dim, unbiased, keepdim, correction=correction))


class MaxDim(Function):
    """Values of max/min along one dim; backward scatters g to the saved indices."""

    needs_inputs = False

    @staticmethod
    def forward(ctx, x, dim, keepdim, is_max):
        if x.shape[dim] == 0:
            raise IndexError(
                f"{'max' if is_max else 'min'}: cannot reduce over dimension {dim} of size 0 "
                f"(input shape {tuple(x.shape)})"
            )
        idx = (np.argmax if is_max else np.argmin)(x, axis=dim, keepdims=True)
        ctx.meta = (x.shape, dim, keepdim, idx)
        vals = np.take_along_axis(x, idx, axis=dim)
        ctx.idx = idx if keepdim else np.squeeze(idx, axis=dim)
        return vals if keepdim else np.squeeze(vals, axis=dim)

    @staticmethod
    def backward(ctx, g):
        shape, dim, keepdim, idx = ctx.meta
        out = np.zeros(shape, dtype=g.data.dtype)
        gd = g.data if keepdim else np.expand_dims(g.data, dim)
        np.put_along_axis(out, idx, gd, axis=dim)
        return wrap(out), None, None, None

    once_differentiable = True


class MaxAll(Function):
    @staticmethod
    def forward(ctx, x, is_max):
        if x.size == 0:
            raise RuntimeError(
                f"{'max' if is_max else 'min'}(): expected a non-empty tensor, got shape "
                f"{tuple(x.shape)}; specify a dim"
            )
        return np.asarray(x.max() if is_max else x.min())

    @staticmethod
    def backward(ctx, g):
        x, _ = ctx.inputs
        mask = (x.data == _res(x.data, ctx)).astype(g.data.dtype)
        mask /= mask.sum()
        return ew.mul(wrap(mask), g), None


def _res(x, ctx):
    return x.max() if ctx.inputs[1] else x.min()


def _maxmin(x, dim, keepdim, is_max, name):
    if isinstance(dim, Tensor):  # max(a, b): elementwise
        return (ew.maximum if is_max else ew.minimum)(x, dim)
    if dim is None:
        return MaxAll.apply(x, is_max)
    d = _norm_dim(dim, x.data.ndim, name)
    if x.data.ndim == 0:
        return values_indices(x, wrap(np.zeros((), dtype=np.int64)))
    vals = MaxDim.apply(x, d, keepdim, is_max)
    idx = vals.grad_fn.idx if vals.grad_fn is not None else _argx(x.data, d, keepdim, is_max)
    return values_indices(vals, wrap(idx.astype(np.int64, copy=False)))


def _argx(x, d, keepdim, is_max):
    return (np.argmax if is_max else np.argmin)(x, axis=d, keepdims=keepdim)


def max(x, dim=None, keepdim=False):  # noqa: A001
    return _maxmin(x, dim, keepdim, True, "max")


def min(x, dim=None, keepdim=False):  # noqa: A001
    return _maxmin(x, dim, keepdim, False, "min")


def amax(x, dim=None, keepdim=False):
    dims = _dims(dim, x.data.ndim, "amax")
    m = wrap(np.amax(x.data, axis=dims, keepdims=True))
    mask = ew.eq(x, m)
    w = wrap(mask.data.astype(x.data.dtype))
    w = ew.div(w, Sum.apply(w, dims, True))
    # value = sum(x * w): gradient split evenly among ties, like PyTorch's amax
    return Sum.apply(ew.mul(x, w), dims, keepdim)


def amin(x, dim=None, keepdim=False):
    return ew.neg(amax(ew.neg(x), dim, keepdim))


def argmax(x, dim=None, keepdim=False):
    if dim is None:
        return wrap(np.asarray(np.argmax(x.data), dtype=np.int64))
    d = _norm_dim(dim, x.data.ndim, "argmax")
    return wrap(np.argmax(x.data, axis=d, keepdims=keepdim).astype(np.int64, copy=False))


def argmin(x, dim=None, keepdim=False):
    if dim is None:
        return wrap(np.asarray(np.argmin(x.data), dtype=np.int64))
    d = _norm_dim(dim, x.data.ndim, "argmin")
    return wrap(np.argmin(x.data, axis=d, keepdims=keepdim).astype(np.int64, copy=False))


class Prod(Function):
    once_differentiable = True

    @staticmethod
    def forward(ctx, x, dim, keepdim):
        ctx.meta = (dim, keepdim)
        return np.asarray(np.prod(x, axis=dim, keepdims=keepdim))

    @staticmethod
    def backward(ctx, g):
        (x, _, _) = ctx.inputs
        dim, keepdim = ctx.meta
        a = x.data
        if dim is None:
            flat = a.reshape(-1)
            others = _exclusive_prod(flat, 0).reshape(a.shape)
            return wrap(others * g.data), None, None
        others = _exclusive_prod(a, dim)
        gd = g.data if keepdim else np.expand_dims(g.data, dim)
        return wrap(others * gd), None, None


def _exclusive_prod(a, axis):
    """Product of all other elements along ``axis`` for every position (zeros exact)."""
    ones_shape = list(a.shape)
    ones_shape[axis] = 1
    one = np.ones(ones_shape, dtype=a.dtype)
    left = np.cumprod(np.concatenate([one, a], axis=axis), axis=axis)
    left = np.take(left, range(a.shape[axis]), axis=axis)
    rev = np.flip(a, axis=axis)
    right = np.cumprod(np.concatenate([one, rev], axis=axis), axis=axis)
    right = np.flip(np.take(right, range(a.shape[axis]), axis=axis), axis=axis)
    return left * right


def prod(x, dim=None, keepdim=False):
    d = None if dim is None else _norm_dim(dim, x.data.ndim, "prod")
    return Prod.apply(x, d, keepdim)


def logsumexp(x, dim, keepdim=False):
    dims = _dims(dim, x.data.ndim, "logsumexp")
    m = np.amax(x.data, axis=dims, keepdims=True) if x.data.size else np.zeros(())
    m = np.where(np.isfinite(m), m, 0.0).astype(x.data.dtype)
    mt = wrap(m)
    s = Sum.apply(ew.exp(ew.sub(x, mt)), dims, True)
    out = ew.add(ew.log(s), mt)
    if not keepdim:
        shape = tuple(n for i, n in enumerate(x.data.shape)
                      if not (dims is None or i in dims))
        out = reshape(out, shape)
    return out
