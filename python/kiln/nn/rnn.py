"""Recurrent layers ``RNN`` (tanh / relu), ``LSTM``, ``GRU`` and the cells ``RNNCell``,
``LSTMCell``, ``GRUCell``, with ``torch.nn``'s constructor arguments, weight shapes,
``state_dict`` keys (``weight_ih_l{k}[_reverse]``...), initialisation (every weight
U(-1/sqrt(H), 1/sqrt(H))) and formulas (LSTM gates i, f, g, o; GRU r, z, n with
n = tanh(W_in x + b_in + r (W_hn h + b_hn))).

Each layer (all directions) is one graph node whose time loop runs in compiled code
(``kiln.ops.rnn``). kiln addition: ``forward(input, hx=None, *, lengths=None)`` takes
per-sequence lengths (B,) instead of a PackedSequence; sequence b then only takes its
first lengths[b] steps (the reverse direction starts at its own last step), outputs at
padded steps are zero and h_n / c_n hold each sequence's state after its last step --
the same numbers as PyTorch's ``pack_padded_sequence(enforce_sorted=False)`` -> layer ->
``pad_packed_sequence`` (padded to the input's length T).

Example:
    >>> import kiln
    >>> from kiln import nn
    >>> lstm = nn.LSTM(3, 4, num_layers=2, batch_first=True)
    >>> out, (h_n, c_n) = lstm(kiln.randn(2, 5, 3), lengths=[5, 3])
    >>> tuple(out.shape), tuple(h_n.shape)
    ((2, 5, 4), (2, 2, 4))
    >>> float(abs(out[1, 3:]).sum())
    0.0
"""

from __future__ import annotations

import numbers
import warnings

from kiln.creation import empty, zeros
from kiln.nn import init
from kiln.nn.module import Module
from kiln.nn.parameter import Parameter
from kiln.ops.movement import cat, contiguous, narrow, reshape, squeeze, transpose, unsqueeze
from kiln.ops.rnn import MODES, check_lengths, init_bound, rnn_layer
from kiln.tensor import Tensor

__all__ = ["RNNBase", "RNN", "LSTM", "GRU", "RNNCellBase", "RNNCell", "LSTMCell", "GRUCell"]


def _dropout(x: Tensor, p: float) -> Tensor:
    from kiln.nn import functional as F

    return F.dropout(x, p, True)


class RNNBase(Module):
    """Shared by RNN, LSTM and GRU: parameters, checks and the layer loop."""

    def __init__(self, mode: str, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, proj_size: int = 0, device=None,
                 dtype=None) -> None:
        super().__init__()
        name = {"lstm": "LSTM", "gru": "GRU"}.get(mode, "RNN")
        if mode not in MODES:
            raise ValueError(f"{name}: unknown mode {mode!r}")
        if (not isinstance(dropout, numbers.Number) or isinstance(dropout, bool)
                or not 0 <= dropout <= 1):
            raise ValueError("dropout should be a number in range [0, 1] representing the "
                             "probability of an element being zeroed")
        for arg, v, low in (("input_size", input_size, 0), ("hidden_size", hidden_size, 1),
                            ("num_layers", num_layers, 1)):
            if not isinstance(v, int) or isinstance(v, bool) or v < low:
                raise ValueError(f"{name}: {arg} must be an integer >= {low}, got {v!r}")
        if proj_size:
            if mode != "lstm":
                raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
            raise NotImplementedError("LSTM: proj_size is not implemented in kiln yet")
        if dropout > 0 and num_layers == 1:
            warnings.warn("dropout option adds dropout after all but last recurrent layer, so "
                          f"non-zero dropout expects num_layers greater than 1, but got "
                          f"dropout={dropout} and num_layers={num_layers}", stacklevel=2)
        self.mode = mode
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first = bias, batch_first
        self.dropout, self.bidirectional = float(dropout), bidirectional
        self.proj_size = proj_size
        D, G = (2 if bidirectional else 1), MODES[mode]
        self._flat_weights_names = []
        for layer in range(num_layers):
            for d in range(D):
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                n_in = input_size if layer == 0 else hidden_size * D
                shapes = [("weight_ih", (G * hidden_size, n_in)),
                          ("weight_hh", (G * hidden_size, hidden_size))]
                if bias:
                    shapes += [("bias_ih", (G * hidden_size,)), ("bias_hh", (G * hidden_size,))]
                for pname, shape in shapes:
                    setattr(self, pname + sfx, Parameter(empty(*shape, dtype=dtype)))
                    self._flat_weights_names.append(pname + sfx)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        b = init_bound(self.hidden_size)
        for p in self.parameters():
            init.uniform_(p, -b, b)

    @property
    def _name(self) -> str:
        return type(self).__name__

    def _layer_weights(self, layer: int) -> list:
        D = 2 if self.bidirectional else 1
        out = []
        for d in range(D):
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            out.append(tuple(getattr(self, n + sfx) if self.bias or n[0] == "w" else None
                             for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")))
        return out

    def _check_hidden(self, h, want, what: str) -> None:
        if not isinstance(h, Tensor):
            raise TypeError(f"{self._name}: {what} must be a Tensor, got {type(h).__name__}")
        if tuple(h.data.shape) != want:
            raise ValueError(f"{self._name}: Expected {what} size {want}, got "
                             f"{list(h.data.shape)}")

    def forward(self, input: Tensor, hx=None, *, lengths=None):  # noqa: A002
        name, lstm = self._name, self.mode == "lstm"
        if not isinstance(input, Tensor):
            raise TypeError(f"{name}: expected a Tensor input, got {type(input).__name__}")
        if input.data.ndim not in (2, 3):
            raise ValueError(f"{name}: Expected input to be 2D or 3D, got "
                             f"{input.data.ndim}D instead")
        w0 = self.weight_ih_l0
        if input.data.dtype != w0.data.dtype:
            raise TypeError(f"{name}: input dtype {input.dtype} does not match the weights' "
                            f"dtype {w0.dtype} (convert one with .float() / .double())")
        if input.data.shape[-1] != self.input_size:
            raise ValueError(f"{name}: input.size(-1) must be equal to input_size. Expected "
                             f"{self.input_size}, got {input.data.shape[-1]} (input of shape "
                             f"{tuple(input.data.shape)})")
        batched = input.data.ndim == 3
        x = input if batched else unsqueeze(input, 0 if self.batch_first else 1)
        if self.batch_first:
            x = transpose(x, 0, 1)
        x = contiguous(x)
        T, B = x.data.shape[0], x.data.shape[1]
        D, H, L = 2 if self.bidirectional else 1, self.hidden_size, self.num_layers
        lens = check_lengths(lengths, T, B, name)
        if hx is None:
            h0 = c0 = zeros(L * D, B, H, dtype=w0.dtype)
        else:
            if lstm:
                if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                    raise TypeError(f"{name}: hx must be a tuple (h_0, c_0)")
                h0, c0 = hx
            else:
                h0, c0 = hx, None
            for h, what in ((h0, "hidden"), (c0, "cell")):
                if h is None:
                    continue
                if isinstance(h, Tensor) and h.data.ndim != (3 if batched else 2):
                    raise ValueError(
                        f"{name}: For {'batched 3-D' if batched else 'unbatched 2-D'} input, "
                        f"hx should also be {3 if batched else 2}-D but got "
                        f"{h.data.ndim}-D tensor")
                self._check_hidden(h, (L * D, B, H) if batched else (L * D, H), what)
                if h.data.dtype != w0.data.dtype:
                    raise TypeError(f"{name}: {what} state dtype {h.dtype} does not match the "
                                    f"weights' dtype {w0.dtype}")
            if not batched:
                h0 = unsqueeze(h0, 1)
                c0 = unsqueeze(c0, 1) if lstm else None
        hs, cs = [], []
        layer_in = x
        for layer in range(L):
            h0_l = narrow(h0, 0, layer * D, D) if L > 1 else h0
            c0_l = (narrow(c0, 0, layer * D, D) if L > 1 else c0) if lstm else None
            out, h_n, c_n = rnn_layer(self.mode, layer_in, h0_l, c0_l,
                                      self._layer_weights(layer), lens)
            hs.append(h_n)
            cs.append(c_n)
            if layer < L - 1 and self.dropout > 0 and self.training:
                out = contiguous(_dropout(out, self.dropout))
            layer_in = out
        h_n = cat(hs, 0) if L > 1 else hs[0]
        c_n = (cat(cs, 0) if L > 1 else cs[0]) if lstm else None
        out = layer_in
        if self.batch_first:
            out = transpose(out, 0, 1)
        if not batched:
            out = squeeze(out, 0 if self.batch_first else 1)
            h_n = squeeze(h_n, 1)
            c_n = squeeze(c_n, 1) if lstm else None
        return (out, (h_n, c_n)) if lstm else (out, h_n)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        return s

    @property
    def all_weights(self) -> list:
        D = 2 if self.bidirectional else 1
        names = self._flat_weights_names
        per = len(names) // (self.num_layers * D)
        return [[getattr(self, n) for n in names[i:i + per]] for i in range(0, len(names), per)]


class RNN(RNNBase):
    """Elman RNN: h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh), act tanh or relu.

    >>> import kiln
    >>> rnn = RNN(3, 4, nonlinearity="relu")
    >>> out, h_n = rnn(kiln.randn(6, 2, 3))
    >>> tuple(out.shape), tuple(h_n.shape)
    ((6, 2, 4), (1, 2, 4))
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 nonlinearity: str = "tanh", bias: bool = True, batch_first: bool = False,
                 dropout: float = 0.0, bidirectional: bool = False, device=None,
                 dtype=None) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or "
                             "'relu'.")
        self.nonlinearity = nonlinearity
        super().__init__("rnn_" + nonlinearity, input_size, hidden_size, num_layers, bias,
                         batch_first, dropout, bidirectional, 0, device, dtype)

    def extra_repr(self) -> str:
        s = super().extra_repr()
        return s + (", nonlinearity='relu'" if self.nonlinearity == "relu" else "")


class LSTM(RNNBase):
    """Long short-term memory; returns ``(output, (h_n, c_n))``.

    >>> import kiln
    >>> out, (h, c) = LSTM(3, 4, bidirectional=True)(kiln.randn(6, 2, 3))
    >>> tuple(out.shape), tuple(h.shape), tuple(c.shape)
    ((6, 2, 8), (2, 2, 4), (2, 2, 4))
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, proj_size: int = 0, device=None,
                 dtype=None) -> None:
        super().__init__("lstm", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, proj_size, device, dtype)


class GRU(RNNBase):
    """Gated recurrent unit (PyTorch's formula, gates r, z, n).

    >>> import kiln
    >>> out, h_n = GRU(3, 4, batch_first=True)(kiln.randn(2, 6, 3))
    >>> tuple(out.shape), tuple(h_n.shape)
    ((2, 6, 4), (1, 2, 4))
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, device=None, dtype=None) -> None:
        super().__init__("gru", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, 0, device, dtype)


class RNNCellBase(Module):
    """One step of a recurrent layer: parameters weight_ih, weight_hh, bias_ih, bias_hh."""

    def __init__(self, mode: str, input_size: int, hidden_size: int, bias: bool = True,
                 device=None, dtype=None) -> None:
        super().__init__()
        for arg, v, low in (("input_size", input_size, 0), ("hidden_size", hidden_size, 1)):
            if not isinstance(v, int) or isinstance(v, bool) or v < low:
                raise ValueError(f"{type(self).__name__}: {arg} must be an integer >= {low}, "
                                 f"got {v!r}")
        self.mode, self.input_size, self.hidden_size, self.bias = mode, input_size, \
            hidden_size, bias
        G = MODES[mode]
        self.weight_ih = Parameter(empty(G * hidden_size, input_size, dtype=dtype))
        self.weight_hh = Parameter(empty(G * hidden_size, hidden_size, dtype=dtype))
        if bias:
            self.bias_ih = Parameter(empty(G * hidden_size, dtype=dtype))
            self.bias_hh = Parameter(empty(G * hidden_size, dtype=dtype))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        b = init_bound(self.hidden_size)
        for p in self.parameters():
            init.uniform_(p, -b, b)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            s += ", bias=False"
        if getattr(self, "nonlinearity", "tanh") != "tanh":
            s += f", nonlinearity={self.nonlinearity}"
        return s

    def _step(self, input: Tensor, hx):  # noqa: A002
        name, lstm = type(self).__name__, self.mode == "lstm"
        if not isinstance(input, Tensor):
            raise TypeError(f"{name}: expected a Tensor input, got {type(input).__name__}")
        if input.data.ndim not in (1, 2):
            raise ValueError(f"{name}: Expected input to be 1D or 2D, got "
                             f"{input.data.ndim}D instead")
        if input.data.dtype != self.weight_ih.data.dtype:
            raise TypeError(f"{name}: input dtype {input.dtype} does not match the weights' "
                            f"dtype {self.weight_ih.dtype}")
        if input.data.shape[-1] != self.input_size:
            raise ValueError(f"{name}: input has inconsistent input_size: got "
                             f"{input.data.shape[-1]} expected {self.input_size}")
        batched = input.data.ndim == 2
        x = input if batched else unsqueeze(input, 0)
        B, H = x.data.shape[0], self.hidden_size
        want = (B, H) if batched else (H,)
        if hx is None:
            h = c = zeros(B, H, dtype=self.weight_ih.dtype)
        else:
            h, c = hx if lstm else (hx, None)
            for t, what in ((h, "hidden"), (c, "cell")):
                if t is None and not lstm:
                    continue
                if not isinstance(t, Tensor) or tuple(t.data.shape) != want:
                    got = tuple(t.data.shape) if isinstance(t, Tensor) else type(t).__name__
                    raise ValueError(f"{name}: {what} state of shape {got} must be {want} for "
                                     f"input of shape {tuple(input.data.shape)}")
                if t.data.dtype != self.weight_ih.data.dtype:
                    raise TypeError(f"{name}: {what} state dtype {t.dtype} does not match the "
                                    f"weights' dtype {self.weight_ih.dtype}")
            if not batched:
                h = unsqueeze(h, 0)
                c = unsqueeze(c, 0) if lstm else None
        ws = [(self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)]
        _, h_n, c_n = rnn_layer(self.mode, unsqueeze(x, 0), unsqueeze(h, 0),
                                unsqueeze(c, 0) if lstm else None, ws)
        shape = (B, H) if batched else (H,)
        h_n = reshape(h_n, shape)
        return (h_n, reshape(c_n, shape)) if lstm else h_n


class RNNCell(RNNCellBase):
    """h' = act(W_ih x + b_ih + W_hh h + b_hh).

    >>> import kiln
    >>> tuple(RNNCell(3, 4)(kiln.randn(2, 3)).shape)
    (2, 4)
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 nonlinearity: str = "tanh", device=None, dtype=None) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity: {nonlinearity}")
        self.nonlinearity = nonlinearity
        super().__init__("rnn_" + nonlinearity, input_size, hidden_size, bias, device, dtype)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:  # noqa: A002
        return self._step(input, hx)


class LSTMCell(RNNCellBase):
    """One LSTM step; returns ``(h', c')``.

    >>> import kiln
    >>> h, c = LSTMCell(3, 4)(kiln.randn(2, 3))
    >>> tuple(h.shape), tuple(c.shape)
    ((2, 4), (2, 4))
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None,
                 dtype=None) -> None:
        super().__init__("lstm", input_size, hidden_size, bias, device, dtype)

    def forward(self, input: Tensor, hx=None):  # noqa: A002
        return self._step(input, hx)


class GRUCell(RNNCellBase):
    """One GRU step.

    >>> import kiln
    >>> tuple(GRUCell(3, 4)(kiln.randn(3)).shape)
    (4,)
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None,
                 dtype=None) -> None:
        super().__init__("gru", input_size, hidden_size, bias, device, dtype)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:  # noqa: A002
        return self._step(input, hx)

