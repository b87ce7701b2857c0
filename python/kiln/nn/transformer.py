"""Transformer layers and stacks with torch.nn's names, arguments, defaults, parameters
and state_dict keys: ``TransformerEncoderLayer``, ``TransformerDecoderLayer``,
``TransformerEncoder``, ``TransformerDecoder`` and ``Transformer``.

Encoder layer (post-norm, ``norm_first=False``; pre-norm moves each norm inside its branch):
    x = norm1(x + dropout1(SelfAttn(x)))
    x = norm2(x + dropout2(linear2(dropout(act(linear1(x))))))
Decoder layer: the same with a cross-attention block on the encoder's memory in between:
    x = norm1(x + SelfAttn(x));  x = norm2(x + CrossAttn(x, memory));  x = norm3(x + FF(x))

Attention is ``kiln.nn.MultiheadAttention`` called with ``need_weights=False`` (torch does
the same), so it runs on the fused scaled-dot-product-attention kernel. When the activation
is relu or gelu and nothing hooks ``linear1``, the first feed-forward Linear is computed
with the activation fused into the GEMM's write-back (``linear(x, w, b, activation=...)``),
which saves one pass over the (tokens, dim_feedforward) activation in each direction.

Masks follow torch: bool True = *not* allowed to attend, float = added to the scores;
``attn_mask`` (L, S) or (N * nhead, L, S), key padding masks (N, S) or (S,) unbatched.

Stacks deep-copy the given layer ``num_layers`` times (as torch's ``_get_clones``).

Example:
    >>> import kiln
    >>> from kiln import nn
    >>> layer = nn.TransformerEncoderLayer(d_model=16, nhead=4, dim_feedforward=32,
    ...                                    batch_first=True)
    >>> enc = nn.TransformerEncoder(layer, num_layers=2)
    >>> enc(kiln.randn(3, 5, 16)).shape
    kiln.Size([3, 5, 16])
    >>> list(enc.state_dict())[:3]
    ['layers.0.self_attn.in_proj_weight', 'layers.0.self_attn.in_proj_bias', \
'layers.0.self_attn.out_proj.weight']
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np

from kiln.nn.activation import GELU, ReLU
from kiln.nn.attention import MultiheadAttention
from kiln.nn.container import ModuleList
from kiln.nn.dropout import Dropout
from kiln.nn.linear import Linear
from kiln.nn.module import Module
from kiln.nn.normalization import LayerNorm
from kiln.ops.activation import gelu, relu
from kiln.ops.matmul import linear
from kiln.tensor import Tensor, _wrap

__all__ = ["Transformer", "TransformerDecoder", "TransformerDecoderLayer",
           "TransformerEncoder", "TransformerEncoderLayer"]


# ---- helpers ---------------------------------------------------------------------
def _get_activation_fn(activation: str) -> Callable[[Tensor], Tensor]:
    if activation == "relu":
        return relu
    if activation == "gelu":
        return gelu
    raise RuntimeError(f"activation should be relu/gelu, not {activation}")


def _deepcopy_module(module: Module) -> Module:
    return copy.deepcopy(module)


def _get_clones(module: Module, n: int) -> ModuleList:
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"num_layers must be a non-negative int, got {n!r}")
    return ModuleList([_deepcopy_module(module) for _ in range(n)])


def _generate_square_subsequent_mask(sz: int, device=None, dtype=None) -> Tensor:
    from kiln.creation import tensor

    arr = np.triu(np.full((sz, sz), -np.inf, dtype=np.float32), 1)
    return tensor(arr, dtype=dtype, device=device)


def _mask_array(m) -> np.ndarray:
    return m.numpy() if isinstance(m, Tensor) else np.asarray(m)


def _detect_is_causal_mask(mask, is_causal: bool | None = None, size: int | None = None) -> bool:
    """torch's rule: an explicit hint wins; otherwise a float mask equal to the causal
    mask of ``size`` is causal. (kiln uses the hint only to check a mask is present.)"""
    make_causal = is_causal is True
    if is_causal is None and mask is not None:
        a = _mask_array(mask)
        sz = size if size is not None else a.shape[-2]
        if a.shape == (sz, sz):
            ref = np.triu(np.full((sz, sz), -np.inf), 1)
            if a.dtype == np.bool_:
                ref = np.isinf(ref)
            make_causal = bool((a == ref).all())
    return make_causal


def _get_seq_len(src: Tensor, batch_first: bool) -> int:
    return src.shape[0] if src.dim() == 2 else src.shape[1 if batch_first else 0]


def _check_heads(cls: str, d_model: int, nhead: int) -> None:
    if isinstance(d_model, bool) or not isinstance(d_model, int) or d_model <= 0:
        raise ValueError(f"{cls}: d_model must be a positive int, got {d_model!r}")
    if isinstance(nhead, bool) or not isinstance(nhead, int) or nhead <= 0:
        raise ValueError(f"{cls}: nhead must be a positive int, got {nhead!r}")
    if d_model % nhead:
        raise ValueError(f"{cls}: d_model ({d_model}) must be divisible by nhead ({nhead})")


class _LayerBase(Module):
    """What the encoder and decoder layers share: activation bookkeeping, the feed-forward
    block and attention calls whose errors name the layer."""

    def _set_activation(self, activation) -> None:
        if isinstance(activation, str):
            activation = _get_activation_fn(activation)
        elif not callable(activation):
            raise TypeError(f"{type(self).__name__}: activation must be 'relu', 'gelu' or a "
                            f"callable, got {activation!r}")
        # torch's flag (1 relu, 2 gelu, 0 other); kept for code that reads it
        if activation is relu or isinstance(activation, ReLU):
            self.activation_relu_or_gelu = 1
        elif activation is gelu or isinstance(activation, GELU):
            self.activation_relu_or_gelu = 2
        else:
            self.activation_relu_or_gelu = 0
        self.activation = activation

    def _fused_activation(self) -> str | None:
        """The activation name ``linear`` can fuse, or None when linear1 or the activation
        is not the stock module/function or carries hooks (then they must run as called)."""
        lin = self.linear1
        if type(lin) is not Linear or lin._forward_pre_hooks or lin._forward_hooks:
            return None
        act = self.activation
        if act is relu:
            return "relu"
        if act is gelu:
            return "gelu"
        if isinstance(act, Module) and (act._forward_pre_hooks or act._forward_hooks):
            return None
        if type(act) is ReLU:
            return "relu"
        if type(act) is GELU:
            return "gelu" if act.approximate == "none" else "gelu_tanh"
        return None

    def _ff_block(self, x: Tensor) -> Tensor:
        fused = self._fused_activation()
        if fused is not None:
            h = linear(x, self.linear1.weight, self.linear1.bias, activation=fused)
        else:
            h = self.activation(self.linear1(x))
        x = self.linear2(self.dropout(h))
        return self._ff_dropout(x)

    def _attend(self, name: str, q: Tensor, kv: Tensor, attn_mask, key_padding_mask,
                is_causal: bool) -> Tensor:
        try:
            return getattr(self, name)(q, kv, kv, attn_mask=attn_mask,
                                       key_padding_mask=key_padding_mask,
                                       need_weights=False, is_causal=is_causal)[0]
        except (ValueError, TypeError, RuntimeError) as e:
            raise type(e)(f"{type(self).__name__}.{name}: {e}") from e

    def _check_input(self, name: str, x) -> None:
        if not isinstance(x, Tensor):
            raise TypeError(f"{type(self).__name__}: {name} must be a kiln Tensor, got "
                            f"{type(x).__name__}")
        d = self.self_attn.embed_dim
        if x.dim() not in (2, 3) or x.shape[-1] != d:
            raise ValueError(f"{type(self).__name__}: {name} must have shape (L, {d}) or a "
                             f"batched 3-d shape ending in {d}, got {tuple(x.shape)}")


# ---- layers ----------------------------------------------------------------------
class TransformerEncoderLayer(_LayerBase):
    """Self-attention and feed-forward block (``torch.nn.TransformerEncoderLayer``).

    >>> import kiln
    >>> layer = TransformerEncoderLayer(8, 2, dim_feedforward=16)
    >>> layer(kiln.randn(5, 3, 8)).shape
    kiln.Size([5, 3, 8])
    """

    __constants__ = ["norm_first"]

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048,
                 dropout: float = 0.1, activation: str | Callable[[Tensor], Tensor] = relu,
                 layer_norm_eps: float = 1e-5, batch_first: bool = False,
                 norm_first: bool = False, bias: bool = True, device=None,
                 dtype=None) -> None:
        super().__init__()
        _check_heads("TransformerEncoderLayer", d_model, nhead)
        fk = {"device": device, "dtype": dtype}
        self.self_attn = MultiheadAttention(d_model, nhead, dropout=dropout, bias=bias,
                                            batch_first=batch_first, **fk)
        self.linear1 = Linear(d_model, dim_feedforward, bias=bias, **fk)
        self.dropout = Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, d_model, bias=bias, **fk)
        self.norm_first = norm_first
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **fk)
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **fk)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)
        self._set_activation(activation)

    def forward(self, src: Tensor, src_mask=None, src_key_padding_mask=None,
                is_causal: bool = False) -> Tensor:
        """(S, N, E), (N, S, E) with batch_first, or (S, E) unbatched -> the same shape."""
        self._check_input("src", src)
        x = src
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), src_mask, src_key_padding_mask,
                                   is_causal=is_causal)
            x = x + self._ff_block(self.norm2(x))
        else:
            x = self.norm1(x + self._sa_block(x, src_mask, src_key_padding_mask,
                                              is_causal=is_causal))
            x = self.norm2(x + self._ff_block(x))
        return x

    def _sa_block(self, x: Tensor, attn_mask, key_padding_mask,
                  is_causal: bool = False) -> Tensor:
        return self.dropout1(self._attend("self_attn", x, x, attn_mask, key_padding_mask,
                                          is_causal))

    def _ff_dropout(self, x: Tensor) -> Tensor:
        return self.dropout2(x)


class TransformerDecoderLayer(_LayerBase):
    """Self-attention, cross-attention on memory, feed-forward
    (``torch.nn.TransformerDecoderLayer``).

    >>> import kiln
    >>> layer = TransformerDecoderLayer(8, 2, dim_feedforward=16, batch_first=True)
    >>> layer(kiln.randn(3, 4, 8), kiln.randn(3, 6, 8)).shape
    kiln.Size([3, 4, 8])
    """

    __constants__ = ["norm_first"]

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048,
                 dropout: float = 0.1, activation: str | Callable[[Tensor], Tensor] = relu,
                 layer_norm_eps: float = 1e-5, batch_first: bool = False,
                 norm_first: bool = False, bias: bool = True, device=None,
                 dtype=None) -> None:
        super().__init__()
        _check_heads("TransformerDecoderLayer", d_model, nhead)
        fk = {"device": device, "dtype": dtype}
        self.self_attn = MultiheadAttention(d_model, nhead, dropout=dropout,
                                            batch_first=batch_first, bias=bias, **fk)
        self.multihead_attn = MultiheadAttention(d_model, nhead, dropout=dropout,
                                                 batch_first=batch_first, bias=bias, **fk)
        self.linear1 = Linear(d_model, dim_feedforward, bias=bias, **fk)
        self.dropout = Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, d_model, bias=bias, **fk)
        self.norm_first = norm_first
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **fk)
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **fk)
        self.norm3 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **fk)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)
        self.dropout3 = Dropout(dropout)
        self._set_activation(activation)

    def forward(self, tgt: Tensor, memory: Tensor, tgt_mask=None, memory_mask=None,
                tgt_key_padding_mask=None, memory_key_padding_mask=None,
                tgt_is_causal: bool = False, memory_is_causal: bool = False) -> Tensor:
        """tgt (T, N, E) and memory (S, N, E) (batch first / unbatched as the encoder)."""
        self._check_input("tgt", tgt)
        self._check_input("memory", memory)
        if memory.dim() != tgt.dim():
            raise ValueError(f"TransformerDecoderLayer: tgt {tuple(tgt.shape)} and memory "
                             f"{tuple(memory.shape)} must both be batched or both unbatched")
        x = tgt
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), tgt_mask, tgt_key_padding_mask,
                                   tgt_is_causal)
            x = x + self._mha_block(self.norm2(x), memory, memory_mask,
                                    memory_key_padding_mask, memory_is_causal)
            x = x + self._ff_block(self.norm3(x))
        else:
            x = self.norm1(x + self._sa_block(x, tgt_mask, tgt_key_padding_mask,
                                              tgt_is_causal))
            x = self.norm2(x + self._mha_block(x, memory, memory_mask,
                                               memory_key_padding_mask, memory_is_causal))
            x = self.norm3(x + self._ff_block(x))
        return x

    def _sa_block(self, x: Tensor, attn_mask, key_padding_mask,
                  is_causal: bool = False) -> Tensor:
        return self.dropout1(self._attend("self_attn", x, x, attn_mask, key_padding_mask,
                                          is_causal))

    def _mha_block(self, x: Tensor, mem: Tensor, attn_mask, key_padding_mask,
                   is_causal: bool = False) -> Tensor:
        return self.dropout2(self._attend("multihead_attn", x, mem, attn_mask,
                                          key_padding_mask, is_causal))

    def _ff_dropout(self, x: Tensor) -> Tensor:
        return self.dropout3(x)


# ---- stacks ----------------------------------------------------------------------
class TransformerEncoder(Module):
    """``num_layers`` deep copies of ``encoder_layer``, then ``norm`` if given
    (``torch.nn.TransformerEncoder``). ``enable_nested_tensor`` and ``mask_check`` are
    accepted for compatibility; kiln has no nested tensors, so padded positions are
    computed like any other (torch's inference fast path returns zeros there).

    >>> import kiln
    >>> enc = TransformerEncoder(TransformerEncoderLayer(8, 2, 16), 2, norm=LayerNorm(8))
    >>> enc(kiln.randn(5, 3, 8)).shape
    kiln.Size([5, 3, 8])
    """

    __constants__ = ["norm"]

    def __init__(self, encoder_layer: TransformerEncoderLayer, num_layers: int,
                 norm: Module | None = None, enable_nested_tensor: bool = True,
                 mask_check: bool = True) -> None:
        super().__init__()
        self.layers = _get_clones(encoder_layer, num_layers)
        self.num_layers = num_layers
        self.norm = norm
        self.enable_nested_tensor = enable_nested_tensor
        self.use_nested_tensor = False  # kiln has no nested tensors
        self.mask_check = mask_check

    def forward(self, src: Tensor, mask=None, src_key_padding_mask=None,
                is_causal: bool | None = None) -> Tensor:
        """Run ``src`` through every layer with the same masks, then the final norm."""
        output = src
        if len(self.layers):
            first = self.layers[0]
            bf = first.self_attn.batch_first if hasattr(first, "self_attn") else False
            is_causal = _detect_is_causal_mask(mask, is_causal, _get_seq_len(src, bf))
        for mod in self.layers:
            output = mod(output, src_mask=mask, is_causal=bool(is_causal),
                         src_key_padding_mask=src_key_padding_mask)
        if self.norm is not None:
            output = self.norm(output)
        return output


class TransformerDecoder(Module):
    """``num_layers`` deep copies of ``decoder_layer``, then ``norm`` if given
    (``torch.nn.TransformerDecoder``).

    >>> import kiln
    >>> dec = TransformerDecoder(TransformerDecoderLayer(8, 2, 16), 2)
    >>> dec(kiln.randn(4, 3, 8), kiln.randn(6, 3, 8)).shape
    kiln.Size([4, 3, 8])
    """

    __constants__ = ["norm"]

    def __init__(self, decoder_layer: TransformerDecoderLayer, num_layers: int,
                 norm: Module | None = None) -> None:
        super().__init__()
        self.layers = _get_clones(decoder_layer, num_layers)
        self.num_layers = num_layers
        self.norm = norm

    def forward(self, tgt: Tensor, memory: Tensor, tgt_mask=None, memory_mask=None,
                tgt_key_padding_mask=None, memory_key_padding_mask=None,
                tgt_is_causal: bool | None = None, memory_is_causal: bool = False) -> Tensor:
        """Run ``tgt`` through every layer against ``memory``, then the final norm."""
        output = tgt
        if len(self.layers):
            first = self.layers[0]
            bf = first.self_attn.batch_first if hasattr(first, "self_attn") else False
            tgt_is_causal = _detect_is_causal_mask(tgt_mask, tgt_is_causal,
                                                   _get_seq_len(tgt, bf))
        for mod in self.layers:
            output = mod(output, memory, tgt_mask=tgt_mask, memory_mask=memory_mask,
                         tgt_key_padding_mask=tgt_key_padding_mask,
                         memory_key_padding_mask=memory_key_padding_mask,
                         tgt_is_causal=bool(tgt_is_causal),
                         memory_is_causal=memory_is_causal)
        if self.norm is not None:
            output = self.norm(output)
        return output


class Transformer(Module):
    """Encoder-decoder transformer (``torch.nn.Transformer``): ``encoder`` is a
    TransformerEncoder with a final LayerNorm, ``decoder`` a TransformerDecoder with one;
    every parameter with more than one dimension is re-initialised xavier-uniform.

    >>> import kiln
    >>> model = Transformer(d_model=8, nhead=2, num_encoder_layers=1, num_decoder_layers=1,
    ...                     dim_feedforward=16)
    >>> model(kiln.randn(6, 2, 8), kiln.randn(4, 2, 8)).shape
    kiln.Size([4, 2, 8])
    """

    def __init__(self, d_model: int = 512, nhead: int = 8, num_encoder_layers: int = 6,
                 num_decoder_layers: int = 6, dim_feedforward: int = 2048,
                 dropout: float = 0.1, activation: str | Callable[[Tensor], Tensor] = relu,
                 custom_encoder: Module | None = None, custom_decoder: Module | None = None,
                 layer_norm_eps: float = 1e-5, batch_first: bool = False,
                 norm_first: bool = False, bias: bool = True, device=None,
                 dtype=None) -> None:
        super().__init__()
        fk = {"device": device, "dtype": dtype}
        args = (d_model, nhead, dim_feedforward, dropout, activation, layer_norm_eps,
                batch_first, norm_first, bias)
        if custom_encoder is not None:
            self.encoder = custom_encoder
        else:
            self.encoder = TransformerEncoder(
                TransformerEncoderLayer(*args, **fk), num_encoder_layers,
                LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **fk))
        if custom_decoder is not None:
            self.decoder = custom_decoder
        else:
            self.decoder = TransformerDecoder(
                TransformerDecoderLayer(*args, **fk), num_decoder_layers,
                LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **fk))
        self._reset_parameters()
        self.d_model = d_model
        self.nhead = nhead
        self.batch_first = batch_first

    def forward(self, src: Tensor, tgt: Tensor, src_mask=None, tgt_mask=None,
                memory_mask=None, src_key_padding_mask=None, tgt_key_padding_mask=None,
                memory_key_padding_mask=None, src_is_causal: bool | None = None,
                tgt_is_causal: bool | None = None, memory_is_causal: bool = False) -> Tensor:
        """src (S, N, E), tgt (T, N, E) (batch first / unbatched likewise) -> (T, N, E)."""
        batched = src.dim() == 3
        bdim = 0 if self.batch_first else 1
        if batched and (tgt.dim() != 3 or src.shape[bdim] != tgt.shape[bdim]):
            raise RuntimeError(f"Transformer: the batch number of src {tuple(src.shape)} and "
                               f"tgt {tuple(tgt.shape)} must be equal")
        if src.shape[-1] != self.d_model or tgt.shape[-1] != self.d_model:
            raise RuntimeError(f"Transformer: the feature number of src {tuple(src.shape)} "
                               f"and tgt {tuple(tgt.shape)} must be equal to d_model "
                               f"{self.d_model}")
        memory = self.encoder(src, mask=src_mask, src_key_padding_mask=src_key_padding_mask,
                              is_causal=src_is_causal)
        return self.decoder(tgt, memory, tgt_mask=tgt_mask, memory_mask=memory_mask,
                            tgt_key_padding_mask=tgt_key_padding_mask,
                            memory_key_padding_mask=memory_key_padding_mask,
                            tgt_is_causal=tgt_is_causal, memory_is_causal=memory_is_causal)

    @staticmethod
    def generate_square_subsequent_mask(sz: int, device=None, dtype=None) -> Tensor:
        """(sz, sz) float mask: -inf above the diagonal, 0 elsewhere.

        >>> Transformer.generate_square_subsequent_mask(3)
        tensor([[  0., -inf, -inf],
                [  0.,   0., -inf],
                [  0.,   0.,   0.]])
        """
        return _generate_square_subsequent_mask(sz, device=device, dtype=dtype)

    def _reset_parameters(self) -> None:
        from kiln.nn.init import xavier_uniform_

        for p in self.parameters():
            if p.dim() > 1:
                xavier_uniform_(p)
