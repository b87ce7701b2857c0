"""``MultiheadAttention`` (torch.nn.MultiheadAttention): in-projection, attention per head
through the fused kernel (or, when the weights are asked for, the composite that
materialises them), out-projection. Parameters and state_dict keys are torch's:
in_proj_weight (3E, E) / q_proj_weight, k_proj_weight, v_proj_weight (when kdim or vdim
differ from E), in_proj_bias (3E,), out_proj.weight, out_proj.bias.

Masks follow torch's MultiheadAttention convention (the opposite of SDPA's for bool):
``key_padding_mask`` (N, S) and ``attn_mask`` (L, S) or (N * num_heads, L, S), bool True =
*not* allowed, float = added to the scores.
"""

from __future__ import annotations

import numpy as np

from kiln.creation import empty
from kiln.nn import init
from kiln.nn.linear import Linear
from kiln.nn.module import Module
from kiln.nn.parameter import Parameter
from kiln.ops import elementwise as ew
from kiln.ops._util import wrap
from kiln.ops.attention import attention_weights, scaled_dot_product_attention
from kiln.ops.matmul import linear, matmul
from kiln.ops.movement import reshape, transpose
from kiln.tensor import Tensor


class NonDynamicallyQuantizableLinear(Linear):
    """The out-projection: a plain ``Linear`` under torch's class name (so repr matches)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None,
                 dtype=None) -> None:
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)


def _float_mask(m, dt) -> np.ndarray:
    """torch MHA mask -> additive float array (bool True = masked out)."""
    a = m.data if isinstance(m, Tensor) else np.asarray(m)
    if a.dtype == np.bool_:
        return np.where(a, -np.inf, 0.0).astype(dt)
    if a.dtype.kind != "f":
        raise TypeError(f"MultiheadAttention: masks must be bool or float, got {a.dtype}")
    return a.astype(dt, copy=False)


class MultiheadAttention(Module):
    """Multi-head attention with torch's parameters, masks and return values.

    >>> import kiln
    >>> mha = MultiheadAttention(8, 2, batch_first=True)
    >>> x = kiln.randn(3, 5, 8)
    >>> out, w = mha(x, x, x)
    >>> tuple(out.shape), tuple(w.shape)
    ((3, 5, 8), (3, 5, 5))
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 add_bias_kv: bool = False, add_zero_attn: bool = False,
                 kdim: int | None = None, vdim: int | None = None, batch_first: bool = False,
                 device=None, dtype=None) -> None:
        super().__init__()
        if embed_dim <= 0 or num_heads <= 0 or embed_dim % num_heads:
            raise ValueError(f"MultiheadAttention: embed_dim {embed_dim} must be positive and "
                             f"divisible by num_heads {num_heads}")
        if add_bias_kv or add_zero_attn:
            raise NotImplementedError("MultiheadAttention: add_bias_kv / add_zero_attn are not "
                                      "supported by kiln")
        self.embed_dim = embed_dim
        self.kdim = kdim if kdim is not None else embed_dim
        self.vdim = vdim if vdim is not None else embed_dim
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
        self.num_heads = num_heads
        self.dropout = dropout
        self.batch_first = batch_first
        self.head_dim = embed_dim // num_heads
        E = embed_dim
        if self._qkv_same_embed_dim:
            self.in_proj_weight = Parameter(empty(3 * E, E, dtype=dtype))
            self.register_parameter("q_proj_weight", None)
            self.register_parameter("k_proj_weight", None)
            self.register_parameter("v_proj_weight", None)
        else:
            self.q_proj_weight = Parameter(empty(E, E, dtype=dtype))
            self.k_proj_weight = Parameter(empty(E, self.kdim, dtype=dtype))
            self.v_proj_weight = Parameter(empty(E, self.vdim, dtype=dtype))
            self.register_parameter("in_proj_weight", None)
        if bias:
            self.in_proj_bias = Parameter(empty(3 * E, dtype=dtype))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = NonDynamicallyQuantizableLinear(E, E, bias=bias, dtype=dtype)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        if self._qkv_same_embed_dim:
            init.xavier_uniform_(self.in_proj_weight)
        else:
            init.xavier_uniform_(self.q_proj_weight)
            init.xavier_uniform_(self.k_proj_weight)
            init.xavier_uniform_(self.v_proj_weight)
        if self.in_proj_bias is not None:
            init.zeros_(self.in_proj_bias)
            init.zeros_(self.out_proj.bias)

    def _project(self, query, key, value):
        E = self.embed_dim
        b = self.in_proj_bias
        bq, bk, bv = (None, None, None) if b is None else (b[:E], b[E:2 * E], b[2 * E:])
        if self._qkv_same_embed_dim:
            w = self.in_proj_weight
            wq, wk, wv = w[:E], w[E:2 * E], w[2 * E:]
        else:
            wq, wk, wv = self.q_proj_weight, self.k_proj_weight, self.v_proj_weight
        return linear(query, wq, bq), linear(key, wk, bk), linear(value, wv, bv)

    def forward(self, query: Tensor, key: Tensor, value: Tensor, key_padding_mask=None,
                need_weights: bool = True, attn_mask=None, average_attn_weights: bool = True,
                is_causal: bool = False):
        """(attn_output, attn_weights or None); shapes as torch's."""
        op = "MultiheadAttention"
        unbatched = query.dim() == 2
        if unbatched:
            query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
            if key_padding_mask is not None:
                key_padding_mask = (key_padding_mask.data if isinstance(key_padding_mask, Tensor)
                                    else np.asarray(key_padding_mask))[None]
        if unbatched or not self.batch_first:  # (L, N, E) -> (N, L, E)
            query, key, value = (transpose(t, 0, 1) for t in (query, key, value))
        if query.dim() != 3 or key.dim() != 3 or value.dim() != 3:
            raise ValueError(f"{op}: query, key and value must be 2-d or 3-d, got shapes "
                             f"{tuple(query.shape)}, {tuple(key.shape)}, {tuple(value.shape)}")
        N, L, E = query.shape
        S = key.shape[1]
        if E != self.embed_dim or key.shape[2] != self.kdim or value.shape[2] != self.vdim \
                or value.shape[:2] != key.shape[:2] or key.shape[0] != N:
            raise ValueError(f"{op}: expected query (.., {self.embed_dim}), key (.., "
                             f"{self.kdim}), value (.., {self.vdim}) with matching batch and "
                             f"source lengths; got {tuple(query.shape)}, {tuple(key.shape)}, "
                             f"{tuple(value.shape)}")
        if is_causal and attn_mask is None:
            raise RuntimeError(f"{op}: need attn_mask if specifying the is_causal hint")
        H, hd = self.num_heads, self.head_dim
        dt = query.data.dtype
        mask = None  # additive float, broadcastable to (N, H, L, S)
        if attn_mask is not None:
            am = _float_mask(attn_mask, dt)
            if am.shape == (L, S):
                mask = am[None, None]
            elif am.shape == (N * H, L, S):
                mask = am.reshape(N, H, L, S)
            else:
                raise ValueError(f"{op}: attn_mask must have shape ({L}, {S}) or "
                                 f"({N * H}, {L}, {S}), got {am.shape}")
        if key_padding_mask is not None:
            kp = _float_mask(key_padding_mask, dt)
            if kp.shape != (N, S):
                raise ValueError(f"{op}: key_padding_mask must have shape ({N}, {S}), got "
                                 f"{kp.shape}")
            kp = kp[:, None, None, :]
            mask = kp if mask is None else mask + kp
        q, k, v = self._project(query, key, value)
        q, k, v = (transpose(reshape(t, (N, t.shape[1], H, hd)), 1, 2) for t in (q, k, v))
        p = self.dropout if self.training else 0.0
        weights = None
        if need_weights:
            w = attention_weights(q, k, None if mask is None else mask)
            weights = w
            if p > 0:
                from kiln.creation import philox_seed
                keep = np.random.default_rng(philox_seed()).random(w.shape) >= p
                w = ew.mul(w, wrap((keep / (1 - p) if p < 1 else keep * 0.0).astype(dt)))
                weights = w
            out = matmul(w, v)
            if average_attn_weights:
                weights = weights.mean(1)
        else:
            out = scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        out = reshape(transpose(out, 1, 2), (N, L, E))
        out = self.out_proj(out)
        if unbatched:
            out = out.squeeze(0)
            if weights is not None:
                weights = weights.squeeze(0)
        elif not self.batch_first:
            out = transpose(out, 0, 1)
        return out, weights
