"""Shape and movement ops: reshape, view, transpose, permute, expand, unsqueeze,
squeeze, flatten, cat, stack, split, chunk, narrow, pad, flip, indexing, clone,
contiguous, type/dtype conversion.

Views stay NumPy views (no copy) wherever NumPy can express them; the gradient of
a movement op is the inverse movement of the incoming gradient (reshape back,
inverse permutation, sum over expanded dims, scatter-add for indexing).
"""

from __future__ import annotations

import math

import numpy as np

from kiln import _dtype
from kiln.autograd import Function
from kiln.ops._util import sum_to, wrap
from kiln.ops.indexing import index
from kiln.tensor import Tensor, _norm_dim


def _sizes(shape, op):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return tuple(int(s) for s in shape)


class Reshape(Function):
    needs_inputs = False

    @staticmethod
    def forward(ctx, x, shape, view):
        ctx.shape = x.shape
        if view:
            out = x.view()
            try:
                out.shape = shape
            except (AttributeError, ValueError) as e:
                raise RuntimeError(
                    f"view: shape {tuple(shape)} is invalid for input of shape {tuple(x.shape)} "
                    f"with its strides ({e}); use .reshape(...) instead"
                ) from None
            return out
        try:
            return x.reshape(shape)
        except ValueError:
            raise RuntimeError(
                f"reshape: shape {tuple(shape)} is invalid for input of shape {tuple(x.shape)} "
                f"({x.size} elements)"
            ) from None

    @staticmethod
    def backward(ctx, g):
        return reshape(g, ctx.shape), None, None


def reshape(x, *shape):
    shape = _sizes(shape, "reshape")
    if shape == x.data.shape:
        return Reshape.apply(x, shape, False) if x.requires_grad else wrap(x.data)
    return Reshape.apply(x, shape, False)


def view(x, *shape):
    if len(shape) == 1 and isinstance(shape[0], _dtype.dtype):
        raise TypeError("view(dtype) is not supported; use .to(dtype)")
    return Reshape.apply(x, _sizes(shape, "view"), True)


def flatten(x, start_dim=0, end_dim=-1):
    nd = x.data.ndim
    if nd == 0:
        return reshape(x, (1,))
    s = _norm_dim(start_dim, nd, "flatten")
    e = _norm_dim(end_dim, nd, "flatten")
    if s > e:
        raise ValueError(f"flatten: start_dim {start_dim} cannot come after end_dim {end_dim}")
    shp = x.data.shape
    return reshape(x, shp[:s] + (math.prod(shp[s:e + 1]),) + shp[e + 1:])


def unflatten(x, dim, sizes):
    d = _norm_dim(dim, x.data.ndim, "unflatten")
    shp = x.data.shape
    return reshape(x, shp[:d] + tuple(sizes) + shp[d + 1:])


class Permute(Function):
    needs_inputs = False

    @staticmethod
    def forward(ctx, x, perm):
        ctx.perm = perm
        return np.transpose(x, perm)

    @staticmethod
    def backward(ctx, g):
        return Permute.apply(g, tuple(np.argsort(ctx.perm))), None


def permute(x, *dims):
    dims = _sizes(dims, "permute")
    nd = x.data.ndim
    if len(dims) != nd:
        raise ValueError(
            f"permute: number of dims {len(dims)} doesn't match the input's {nd} (shape "
            f"{tuple(x.data.shape)})"
        )
    perm = tuple(_norm_dim(d, nd, "permute") for d in dims)
    if len(set(perm)) != nd:
        raise ValueError(f"permute: repeated dim in {dims}")
    return Permute.apply(x, perm)


def transpose(x, dim0, dim1):
    nd = x.data.ndim
    if nd == 0:
        return x
    perm = list(range(nd))
    a, b = _norm_dim(dim0, nd, "transpose"), _norm_dim(dim1, nd, "transpose")
    perm[a], perm[b] = perm[b], perm[a]
    return Permute.apply(x, tuple(perm))


def t(x):
    if x.data.ndim > 2:
        raise ValueError(f"t: expects a tensor with <= 2 dimensions, got shape {tuple(x.shape)}")
    return transpose(x, 0, 1) if x.data.ndim == 2 else x


class Expand(Function):
    needs_inputs = False

    @staticmethod
    def forward(ctx, x, shape):
        ctx.shape = x.shape
        try:
            return np.broadcast_to(x, shape)
        except ValueError:
            raise ValueError(
                f"expand: the expanded size {tuple(shape)} must match the existing size "
                f"{tuple(x.shape)} at non-singleton dimensions"
            ) from None

    @staticmethod
    def backward(ctx, g):
        return sum_to(g, ctx.shape), None


def expand(x, *shape):
    shape = list(_sizes(shape, "expand"))
    lead = len(shape) - x.data.ndim
    if lead < 0:
        raise ValueError(
            f"expand: the number of sizes provided ({len(shape)}) must be greater or equal to "
            f"the number of dimensions in the tensor ({x.data.ndim})"
        )
    for i, s in enumerate(shape):
        if s == -1:
            if i < lead:
                raise ValueError("expand: -1 is not allowed in a leading, non-existing dimension")
            shape[i] = x.data.shape[i - lead]
    shape = tuple(shape)
    if shape == x.data.shape:
        return x
    return Expand.apply(x, shape)


def unsqueeze(x, dim):
    nd = x.data.ndim + 1
    d = _norm_dim(dim, nd, "unsqueeze")
    shp = x.data.shape
    return reshape(x, shp[:d] + (1,) + shp[d:])


def squeeze(x, dim=None):
    shp = x.data.shape
    if dim is None:
        return reshape(x, tuple(s for s in shp if s != 1))
    dims = dim if isinstance(dim, (tuple, list)) else (dim,)
    dd = {_norm_dim(d, x.data.ndim, "squeeze") for d in dims} if shp else set()
    return reshape(x, tuple(s for i, s in enumerate(shp) if not (i in dd and s == 1)))


class Cat(Function):
    needs_inputs = False

    @staticmethod
    def forward(ctx, dim, *xs):
        ctx.sizes = [a.shape[dim] for a in xs]
        ctx.dim = dim
        return np.concatenate(xs, axis=dim)

    @staticmethod
    def backward(ctx, g):
        grads = [None]
        start = 0
        for n in ctx.sizes:
            grads.append(narrow(g, ctx.dim, start, n))
            start += n
        return tuple(grads)


def _check_seq(tensors, op):
    if isinstance(tensors, Tensor) or not len(tensors):
        raise ValueError(f"{op}: expected a non-empty sequence of tensors")
    for t in tensors:
        if not isinstance(t, Tensor):
            raise TypeError(f"{op}: expected a sequence of Tensors, got {type(t).__name__}")


def cat(tensors, dim=0):
    _check_seq(tensors, "cat")
    tensors = [t for t in tensors if not (t.data.ndim == 1 and t.data.size == 0)] or list(tensors)
    nd = tensors[0].data.ndim
    if nd == 0:
        raise ValueError("cat: zero-dimensional tensor cannot be concatenated")
    d = _norm_dim(dim, nd, "cat")
    ref = tensors[0].data.shape
    for t in tensors:
        s = t.data.shape
        if len(s) != nd or any(a != b for i, (a, b) in enumerate(zip(s, ref)) if i != d):
            raise ValueError(
                f"cat: sizes of tensors must match except in dimension {d}; got "
                f"{[tuple(x.data.shape) for x in tensors]}"
            )
    return Cat.apply(d, *tensors)


concat = cat


def stack(tensors, dim=0):
    _check_seq(tensors, "stack")
    ref = tensors[0].data.shape
    for t in tensors:
        if t.data.shape != ref:
            raise ValueError(
                f"stack: expects each tensor to be equal size, got "
                f"{[tuple(x.data.shape) for x in tensors]}"
            )
    d = _norm_dim(dim, len(ref) + 1, "stack")
    return cat([unsqueeze(t, d) for t in tensors], d)


class Narrow(Function):
    needs_inputs = False

    @staticmethod
    def forward(ctx, x, dim, start, length):
        ctx.meta = (x.shape, dim, start)
        sl = [slice(None)] * x.ndim
        sl[dim] = slice(start, start + length)
        return x[tuple(sl)]

    @staticmethod
    def backward(ctx, g):
        shape, dim, start = ctx.meta
        pad_w = [(0, 0)] * len(shape)
        pad_w[dim] = (start, shape[dim] - start - g.data.shape[dim])
        return _pad_zero(g, pad_w), None, None, None


def narrow(x, dim, start, length):
    d = _norm_dim(dim, x.data.ndim, "narrow")
    n = x.data.shape[d]
    if start < 0:
        start += n
    if not (0 <= start and length >= 0 and start + length <= n):
        raise IndexError(
            f"narrow: start ({start}) + length ({length}) exceeds dimension size ({n})"
        )
    return Narrow.apply(x, d, start, length)


def split(x, split_size_or_sections, dim=0):
    d = _norm_dim(dim, x.data.ndim, "split")
    n = x.data.shape[d]
    if isinstance(split_size_or_sections, int):
        s = split_size_or_sections
        if s <= 0:
            raise ValueError(f"split: split_size must be positive, got {s}")
        sizes = [min(s, n - i) for i in range(0, n, s)] or [0]
    else:
        sizes = list(split_size_or_sections)
        if sum(sizes) != n:
            raise ValueError(
                f"split: split_sizes {sizes} don't sum to the size {n} of dimension {d}"
            )
    out, start = [], 0
    for k in sizes:
        out.append(narrow(x, d, start, k))
        start += k
    return tuple(out)


def chunk(x, chunks, dim=0):
    if chunks <= 0:
        raise ValueError(f"chunk: chunks must be positive, got {chunks}")
    n = x.data.shape[_norm_dim(dim, x.data.ndim, "chunk")]
    size = -(-n // chunks) if n else 1
    return split(x, size, dim)


class PadZero(Function):
    needs_inputs = False

    @staticmethod
    def forward(ctx, x, widths, value):
        ctx.widths = widths
        return np.pad(x, widths, mode="constant", constant_values=value)

    @staticmethod
    def backward(ctx, g):
        sl = tuple(slice(lo, g.data.shape[i] - hi) for i, (lo, hi) in enumerate(ctx.widths))
        return index(g, sl), None, None


def _pad_zero(g, widths):
    return PadZero.apply(g, tuple(widths), 0)


class PadMode(Function):
    """reflect / replicate / circular padding; backward folds the padded border back."""

    needs_inputs = False

    once_differentiable = True

    @staticmethod
    def forward(ctx, x, widths, mode):
        ctx.meta = (x.shape, widths, mode)
        return np.pad(x, widths, mode=mode)

    @staticmethod
    def backward(ctx, g):
        shape, widths, mode = ctx.meta
        # gradient of np.pad: pad an index map, then scatter-add through it
        ids = np.arange(int(np.prod(shape))).reshape(shape)
        idx = np.pad(ids, widths, mode=mode).reshape(-1)
        out = np.bincount(idx, weights=g.data.reshape(-1).astype(np.float64),
                          minlength=ids.size)
        return wrap(out.reshape(shape).astype(g.data.dtype)), None, None


_NP_MODES = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def pad(x, pad, mode="constant", value=None):  # noqa: A002 - F.pad's name
    if len(pad) % 2 or len(pad) // 2 > x.data.ndim:
        raise ValueError(
            f"pad: padding length {len(pad)} must be even and at most 2 * ndim "
            f"({x.data.ndim}) for input of shape {tuple(x.data.shape)}"
        )
    widths = [(0, 0)] * x.data.ndim
    for i in range(len(pad) // 2):
        widths[x.data.ndim - 1 - i] = (int(pad[2 * i]), int(pad[2 * i + 1]))
    if any(lo < 0 or hi < 0 for lo, hi in widths):
        # negative padding crops, like PyTorch
        sl = tuple(slice(-lo if lo < 0 else None, hi if hi < 0 else None) for lo, hi in widths)
        x = index(x, sl)
        widths = [(max(lo, 0), max(hi, 0)) for lo, hi in widths]
    if mode == "constant":
        return PadZero.apply(x, tuple(widths), 0 if value is None else value)
    if mode not in _NP_MODES:
        raise ValueError(f"pad: unknown mode {mode!r} (constant, reflect, replicate, circular)")
    if mode == "reflect":
        for (lo, hi), n in zip(widths, x.data.shape):
            if lo >= n or hi >= n:
                raise ValueError(
                    f"pad: reflect padding ({lo}, {hi}) must be smaller than the dimension "
                    f"size {n} (input shape {tuple(x.data.shape)})"
                )
    return PadMode.apply(x, tuple(widths), _NP_MODES[mode])


class Flip(Function):
    needs_inputs = False

    @staticmethod
    def forward(ctx, x, dims):
        ctx.dims = dims
        return np.flip(x, axis=dims)

    @staticmethod
    def backward(ctx, g):
        return Flip.apply(g, ctx.dims), None


def flip(x, dims):
    dims = (dims,) if isinstance(dims, int) else tuple(dims)
    return Flip.apply(x, tuple(_norm_dim(d, x.data.ndim, "flip") for d in dims))


# ---- copies and conversion ----------------------------------------------------------
class Clone(Function):
    needs_inputs = False

    @staticmethod
    def forward(ctx, x):
        return x.copy(order="C")

    @staticmethod
    def backward(ctx, g):
        return g


def clone(x):
    return Clone.apply(x)


def contiguous(x):
    if x.data.flags.c_contiguous:
        return x
    return Clone.apply(x)


class Cast(Function):
    needs_inputs = False

    @staticmethod
    def forward(ctx, x, nd):
        ctx.src = x.dtype
        return x.astype(nd)

    @staticmethod
    def backward(ctx, g):
        if ctx.src.kind != "f":
            return None, None
        return Cast.apply(g, ctx.src), None


def to_dtype(x, dt):
    nd = _dtype.to_np(dt)
    if nd == x.data.dtype:
        return x
    return Cast.apply(x, nd)
