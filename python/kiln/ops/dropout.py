"""Dropout through the compiled Philox kernels: ``dropout`` (elementwise) and the feature
dropouts ``dropout1d`` / ``dropout2d`` / ``dropout3d`` (one draw per channel), with
``torch.nn.functional``'s signatures and train/eval behaviour.

Element i of a call is kept when the Philox uniform of (seed, i) is >= p (see
csrc/common/philox.h) and scaled by 1 / (1 - p); the seed is one draw from kiln's global
generator (``kiln.manual_seed`` makes masks reproducible) and the mask does not depend on
the thread count. The backward regenerates the same mask from the seed (no mask is stored),
so it is the same kernel applied to the gradient -- a linear op, differentiable again.
p = 0 or ``training=False`` return the input itself; p = 1 gives zeros (as PyTorch).
"""

from __future__ import annotations

import numpy as np

from kiln.autograd import Function, is_grad_enabled
from kiln.creation import philox_seed
from kiln.ops._util import check_float, contig, kernels
from kiln.tensor import Tensor


class Dropout(Function):
    needs_inputs = False  # the mask comes from the seed; the input's values are not read

    @staticmethod
    def forward(ctx, x, seed, p, inner):
        x = contig(x)
        out = np.empty_like(x)
        kernels(x).dropout(x, out, seed, p, inner)
        return out

    @staticmethod
    def backward(ctx, g):
        _, seed, p, inner = ctx.inputs
        if is_grad_enabled():  # create_graph: the same linear map, recorded
            return Dropout.apply(g, seed, p, inner), None, None, None
        gd = contig(g.data)
        gi = np.empty_like(gd)
        kernels(gd).dropout_backward(gd, gi, seed, p, inner)
        return gi, None, None, None


def _check(input, p, op):  # noqa: A002
    if type(input) is not Tensor:
        raise TypeError(f"{op}: expected a Tensor, got {type(input).__name__}")
    check_float(input, op)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{op}: dropout probability has to be between 0 and 1, but got {p}")


def _apply(input, p, training, inplace, inner, op):  # noqa: A002
    _check(input, p, op)
    if not training or p == 0.0 or input.data.size == 0:
        return input
    seed = philox_seed()
    if inplace:
        from kiln._methods import _inplace

        return _inplace(input, lambda s: Dropout.apply(s, seed, float(p), inner))
    return Dropout.apply(input, seed, float(p), inner)


def dropout(input: Tensor, p: float = 0.5, training: bool = True,  # noqa: A002
            inplace: bool = False) -> Tensor:
    """Zero each element with probability ``p`` and scale the rest by ``1 / (1 - p)``.

    >>> import kiln
    >>> y = dropout(kiln.ones(1000), p=0.25)
    >>> sorted(set(y.numpy().tolist()))
    [0.0, 1.3333333730697632]
    >>> dropout(kiln.ones(3), p=0.5, training=False)
    tensor([1., 1., 1.])
    """
    return _apply(input, p, training, inplace, 1, "dropout")


def _feature(input, p, training, inplace, nd, op):  # noqa: A002
    _check(input, p, op)
    dims = input.data.ndim
    if dims not in (nd + 1, nd + 2):
        raise ValueError(
            f"{op}: expected {nd + 1}-D (unbatched) or {nd + 2}-D (batched) input, got input of "
            f"shape {tuple(input.data.shape)}"
        )
    if nd == 2 and dims == 3:  # PyTorch: a 3-D input to dropout2d is read as (N, C, L)
        import warnings

        warnings.warn("dropout2d: Received a 3D input to dropout2d and assuming that channel-wise "
                      "1D dropout behavior is desired - input is interpreted as shape (N, C, L), "
                      "as PyTorch does; use dropout1d for that", UserWarning, stacklevel=3)
        nd = 1
    inner = int(np.prod(input.data.shape[dims - nd:], dtype=np.int64)) or 1
    return _apply(input, p, training, inplace, inner, op)


def dropout1d(input: Tensor, p: float = 0.5, training: bool = True,  # noqa: A002
              inplace: bool = False) -> Tensor:
    """Zero whole channels of (N, C, L) or (C, L) input with probability ``p``.

    >>> import kiln
    >>> y = dropout1d(kiln.ones(2, 8, 4), p=0.5)
    >>> bool(((y.numpy() == 0).all(-1) | (y.numpy() == 2).all(-1)).all())
    True
    """
    return _feature(input, p, training, inplace, 1, "dropout1d")


def dropout2d(input: Tensor, p: float = 0.5, training: bool = True,  # noqa: A002
              inplace: bool = False) -> Tensor:
    """Zero whole channels of (N, C, H, W) or (C, H, W) input with probability ``p``.

    >>> import kiln
    >>> y = dropout2d(kiln.ones(2, 8, 3, 3), p=0.5)
    >>> bool(((y.numpy() == 0).all((-1, -2)) | (y.numpy() == 2).all((-1, -2))).all())
    True
    """
    return _feature(input, p, training, inplace, 2, "dropout2d")


def dropout3d(input: Tensor, p: float = 0.5, training: bool = True,  # noqa: A002
              inplace: bool = False) -> Tensor:
    """Zero whole channels of (N, C, D, H, W) or (C, D, H, W) input with probability ``p``.

    >>> import kiln
    >>> dropout3d(kiln.ones(1, 2, 2, 2, 2), p=0.5, training=False).shape
    kiln.Size([1, 2, 2, 2, 2])
    """
    return _feature(input, p, training, inplace, 3, "dropout3d")
