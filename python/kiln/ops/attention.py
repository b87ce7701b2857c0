"""Scaled dot-product attention: the fused flash-style kernels (``attention_forward`` /
``attention_backward``, csrc/cpu/attention.cpp) behind ``torch.nn.functional``'s
``scaled_dot_product_attention`` signature, plus the composite (matmul + softmax + matmul
in kiln ops) that stays as the kernels' test oracle and serves callers that need the
attention weights themselves (``MultiheadAttention(need_weights=True)``).

    out = dropout(softmax(q k^T * scale + mask)) v

Shapes: query (..., Hq, L, D), key (..., Hkv, S, D), value (..., Hkv, S, Dv) with the same
leading dims; Hkv < Hq needs ``enable_gqa=True`` (query head h reads key/value head
h // (Hq / Hkv), nothing is copied). ``attn_mask``: bool (True = attend) or float (added),
broadcastable to (..., Hq, L, S). ``is_causal``: key j attends query i iff j <= i
(top-left aligned, like torch). A fully masked row gives 0 and zero gradients, as torch
2.13 does. Dropout on the attention weights uses the Philox counter RNG at element index
((b * Hq + h) * L + i) * S + j, so backward regenerates the forward's mask.
"""

from __future__ import annotations

import math

import numpy as np

from kiln.autograd import Function
from kiln.ops import elementwise as ew
from kiln.ops._util import check_float, contig, kernels, wrap
from kiln.ops.activation import softmax
from kiln.ops.matmul import matmul
from kiln.ops.movement import contiguous, expand, reshape, transpose, unsqueeze
from kiln.tensor import Tensor

_OP = "scaled_dot_product_attention"


class ScaledDotProductAttention(Function):
    once_differentiable = True

    @staticmethod
    def forward(ctx, q, k, v, mask, scale, is_causal, dropout_p, seed):
        out = np.empty(q.shape[:3] + (v.shape[3],), dtype=q.dtype)
        lse = np.empty(q.shape[:3], dtype=q.dtype)
        kernels(q).attention_forward(q, k, v, mask, out, lse, scale, is_causal, dropout_p, seed)
        ctx.out, ctx.lse = out, lse
        return out

    @staticmethod
    def backward(ctx, g):
        q, k, v, mask, scale, is_causal, dropout_p, seed = ctx.inputs
        gq = np.empty_like(q.data)
        gk = np.empty_like(k.data)
        gv = np.empty_like(v.data)
        kernels(gq).attention_backward(contig(g.data), q.data, k.data, v.data, mask, ctx.out,
                                       ctx.lse, gq, gk, gv, scale, is_causal, dropout_p, seed)
        return wrap(gq), wrap(gk), wrap(gv), None, None, None, None, None


def _shapes(q: Tensor, k: Tensor, v: Tensor, enable_gqa: bool):
    """(batch dims, Hq, Hkv, L, S, D, Dv) after checking the three shapes."""
    qs, ks, vs = tuple(q.data.shape), tuple(k.data.shape), tuple(v.data.shape)
    if not (q.data.ndim == k.data.ndim == v.data.ndim) or q.data.ndim < 2:
        raise ValueError(f"{_OP}: query {qs}, key {ks} and value {vs} must have the same number "
                         "of dimensions (at least 2: (..., L, E))")
    L, D = qs[-2:]
    S, Dv = ks[-2], vs[-1]
    if ks[-1] != D or vs[-2] != S:
        raise ValueError(f"{_OP}: expected key (..., S, {D}) and value (..., S, Ev) for query "
                         f"{qs}; got key {ks} and value {vs}")
    if q.data.ndim == 2:
        return (), 1, 1, L, S, D, Dv
    Hq, Hk = qs[-3], ks[-3]
    if qs[:-3] != ks[:-3] or ks[:-3] != vs[:-3] or vs[-3] != Hk:
        raise ValueError(f"{_OP}: batch/head dims of query {qs}, key {ks} and value {vs} differ")
    if Hq != Hk and not (enable_gqa and Hk > 0 and Hq % Hk == 0):
        raise ValueError(f"{_OP}: query has {Hq} heads and key/value {Hk}; different head counts "
                         "need enable_gqa=True and a number of query heads divisible by the "
                         "key/value heads")
    return qs[:-3], Hq, Hk, L, S, D, Dv


def _mask4(mask: np.ndarray, batch: tuple, Hq: int, L: int, S: int) -> np.ndarray:
    """The mask as a contiguous 4-d (Bm, Hm, Lm, Sm) array, each dim 1 or full."""
    full = batch + (Hq, L, S)
    try:
        np.broadcast_shapes(mask.shape, full)
    except ValueError:
        raise ValueError(f"{_OP}: attn_mask of shape {mask.shape} does not broadcast to "
                         f"{full}") from None
    if mask.ndim > len(full) or np.broadcast_shapes(mask.shape, full) != full:
        raise ValueError(f"{_OP}: attn_mask of shape {mask.shape} does not broadcast to {full}")
    m = mask.reshape((1,) * (len(full) - mask.ndim) + mask.shape)
    mb = m.shape[: len(batch)]
    if all(s == 1 for s in mb):
        bdim = 1
    else:  # some batch dims broadcast, others not: expand those (rare)
        m = np.broadcast_to(m, batch + m.shape[len(batch):])
        bdim = math.prod(batch)
    return contig(m.reshape((bdim,) + m.shape[len(batch):]))


def scaled_dot_product_attention(query: Tensor, key: Tensor, value: Tensor, attn_mask=None,
                                 dropout_p: float = 0.0, is_causal: bool = False,
                                 scale: float | None = None, enable_gqa: bool = False) -> Tensor:
    """Attention softmax(q k^T * scale + mask) v with PyTorch's semantics (fused kernel).

    >>> import kiln
    >>> q = kiln.ones(1, 1, 2, 4)
    >>> v = kiln.tensor([[[[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]]]])
    >>> scaled_dot_product_attention(q, q, v, is_causal=True)
    tensor([[[[1.0000, 0.0000, 0.0000, 0.0000],
          [0.5000, 0.5000, 0.0000, 0.0000]]]])
    """
    from kiln.creation import philox_seed
    for name, t in (("query", query), ("key", key), ("value", value)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{_OP}: {name} must be a Tensor, got {type(t).__name__}")
        check_float(t, _OP, name)
    if not (query.data.dtype == key.data.dtype == value.data.dtype):
        raise TypeError(f"{_OP}: query {query.dtype}, key {key.dtype} and value {value.dtype} "
                        "must have the same dtype")
    if not 0.0 <= dropout_p <= 1.0:
        raise ValueError(f"{_OP}: dropout_p must be in [0, 1], got {dropout_p}")
    if is_causal and attn_mask is not None:
        raise ValueError(f"{_OP}: explicit attn_mask should not be set when is_causal=True")
    batch, Hq, Hk, L, S, D, Dv = _shapes(query, key, value, enable_gqa)
    if scale is None:
        scale = 1.0 / math.sqrt(D) if D else 1.0
    mask = None
    if attn_mask is not None:
        m = attn_mask.data if isinstance(attn_mask, Tensor) else np.asarray(attn_mask)
        if m.dtype != np.bool_:
            if m.dtype.kind != "f":
                raise TypeError(f"{_OP}: attn_mask must be bool or float, got {m.dtype}")
            if isinstance(attn_mask, Tensor) and attn_mask.requires_grad:
                return sdpa_composite(query, key, value, attn_mask, dropout_p, is_causal,
                                      scale, enable_gqa)
            m = m.astype(query.data.dtype, copy=False)
        mask = _mask4(m, batch, Hq, L, S)
    B = math.prod(batch)
    q4 = _as4(query, (B, Hq, L, D), reshape)
    k4 = _as4(key, (B, Hk, S, D), reshape)
    v4 = _as4(value, (B, Hk, S, Dv), reshape)
    seed = philox_seed() if dropout_p > 0 else 0
    out = ScaledDotProductAttention.apply(q4, k4, v4, mask, float(scale), bool(is_causal),
                                          float(dropout_p), seed)
    return reshape(out, tuple(query.data.shape[:-1]) + (Dv,))


def _as4(t: Tensor, shape: tuple, reshape) -> Tensor:
    t = contiguous(t)
    return t if tuple(t.data.shape) == shape else reshape(t, shape)


# ---- composite (test oracle; attention weights for MultiheadAttention) ----------------
def attention_weights(query: Tensor, key: Tensor, attn_mask=None, is_causal: bool = False,
                      scale: float | None = None, enable_gqa: bool = False) -> Tensor:
    """softmax(q k^T * scale + mask) in kiln ops, shape (..., Hq, L, S) (differentiable)."""
    L, D = query.data.shape[-2:]
    S = key.data.shape[-2]
    if scale is None:
        scale = 1.0 / math.sqrt(D) if D else 1.0
    if query.data.ndim >= 3 and key.data.shape[-3] != query.data.shape[-3]:
        g = query.data.shape[-3] // key.data.shape[-3]  # GQA: repeat_interleave the heads
        ks = tuple(key.data.shape)
        key = reshape(expand(unsqueeze(key, -3), *ks[:-2], g, *ks[-2:]),
                      ks[:-3] + (ks[-3] * g,) + ks[-2:])
    s = ew.mul(matmul(query, transpose(key, -2, -1)), float(scale))
    dt = query.data.dtype
    if is_causal:
        attn_mask = np.tril(np.ones((L, S), dtype=bool))
    if attn_mask is not None:
        m = attn_mask.data if isinstance(attn_mask, Tensor) else attn_mask
        if m.dtype == np.bool_:
            s = ew.add(s, wrap(np.where(m, 0.0, -np.inf).astype(dt)))
        else:
            s = ew.add(s, attn_mask if isinstance(attn_mask, Tensor) else wrap(m.astype(dt)))
    p = softmax(s, -1)
    # a fully masked row is NaN after softmax; torch's SDPA gives 0 there
    if np.isnan(p.data).any():
        dead = np.isneginf(s.data).all(axis=-1, keepdims=True)
        if dead.any():
            p = ew.where(wrap(~dead), p, 0.0)
    return p


def sdpa_composite(query: Tensor, key: Tensor, value: Tensor, attn_mask=None,
                   dropout_p: float = 0.0, is_causal: bool = False, scale: float | None = None,
                   enable_gqa: bool = False, keep: np.ndarray | None = None) -> Tensor:
    """The unfused reference: attention_weights(...) (dropped with ``keep``, a bool array of
    the weights' shape, or a fresh Bernoulli mask) @ value."""
    p = attention_weights(query, key, attn_mask, is_causal, scale, enable_gqa)
    if dropout_p > 0:
        if keep is None:
            keep = np.random.default_rng().random(p.data.shape) >= dropout_p
        fac = 1.0 / (1.0 - dropout_p) if dropout_p < 1 else 0.0
        p = ew.mul(p, wrap((keep * fac).astype(p.data.dtype)))
    if value.data.ndim >= 3 and value.data.shape[-3] != query.data.shape[-3]:
        g = query.data.shape[-3] // value.data.shape[-3]
        vs = tuple(value.data.shape)
        value = reshape(expand(unsqueeze(value, -3), *vs[:-2], g, *vs[-2:]),
                        vs[:-3] + (vs[-3] * g,) + vs[-2:])
    return matmul(p, value)
