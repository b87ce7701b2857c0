"""Embedding lookup (compiled kernels ``embedding`` / ``embedding_backward`` /
``embedding_renorm``, csrc/cpu/embedding.cpp) with ``torch.nn.functional.embedding``'s
semantics: out = weight[input]; the gradient of a row is the sum of the output gradients
of every position that looked it up (duplicates accumulate), zero for ``padding_idx``,
divided by the row's count in the batch with ``scale_grad_by_freq``; ``max_norm``
renormalises the looked-up rows of ``weight`` in place first (as torch does)."""

from __future__ import annotations

import numpy as np

from kiln.autograd import Function
from kiln.ops._util import check_float, contig, kernels, wrap
from kiln.ops.movement import reshape
from kiln.tensor import Tensor

_OP = "embedding"


class Embedding(Function):
    once_differentiable = True

    @staticmethod
    def forward(ctx, weight, idx, padding_idx, scale_grad_by_freq):
        out = np.empty((idx.size, weight.shape[1]), dtype=weight.dtype)
        kernels(weight).embedding(weight, idx, out)
        return out

    @staticmethod
    def backward(ctx, g):
        weight, idx, padding_idx, scale_grad_by_freq = ctx.inputs
        gw = np.empty_like(weight.data)
        kernels(gw).embedding_backward(contig(g.data), idx, gw, padding_idx, scale_grad_by_freq)
        return wrap(gw), None, None, None


def embedding(input: Tensor, weight: Tensor, padding_idx: int | None = None,  # noqa: A002
              max_norm: float | None = None, norm_type: float = 2.0,
              scale_grad_by_freq: bool = False, sparse: bool = False) -> Tensor:
    """Rows of ``weight`` (V, E) at the int64 indices ``input``: shape input.shape + (E,).

    >>> import kiln
    >>> w = kiln.tensor([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]])
    >>> embedding(kiln.tensor([[2, 0]]), w)
    tensor([[[4., 5.],
             [0., 1.]]])
    """
    if not isinstance(input, Tensor) or not isinstance(weight, Tensor):
        raise TypeError(f"{_OP}: expected Tensors for input and weight")
    check_float(weight, _OP, "weight")
    if weight.data.ndim != 2:
        raise ValueError(f"{_OP}: weight must be 2-d (num_embeddings, embedding_dim), got shape "
                         f"{tuple(weight.data.shape)}")
    if input.data.dtype.kind not in "iu":
        raise TypeError(f"{_OP}: input must hold integer indices (int64), got {input.dtype}")
    if sparse:
        raise NotImplementedError(f"{_OP}: sparse gradients are not supported by kiln; use "
                                  "sparse=False (dense gradient)")
    V = weight.data.shape[0]
    pad = -1
    if padding_idx is not None:
        if not -V <= padding_idx < V:
            raise ValueError(f"{_OP}: padding_idx {padding_idx} must be within "
                             f"num_embeddings {V}")
        pad = padding_idx + V if padding_idx < 0 else padding_idx
    idx = contig(input.data.astype(np.int64, copy=False).reshape(-1))
    if max_norm is not None:
        kernels(weight.data).embedding_renorm(weight.data, idx, float(max_norm),
                                              float(norm_type))
    out = Embedding.apply(weight, idx, pad, bool(scale_grad_by_freq))
    return reshape(out, tuple(input.data.shape) + (weight.data.shape[1],))
