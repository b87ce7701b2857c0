"""rnn_forward / rnn_backward on the Numba CUDA table against kiln._cpu (every mode, both
directions, variable lengths, optional biases / saved gates / incoming gradients)."""

from __future__ import annotations

import numpy as np
import pytest
from numba_helpers import compare, nc

GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}
MODES = list(GATES)
DTYPES = [np.float32, np.float64]


def _forward_args(rng, mode, T, B, H, D, dt, bias=True, lengths=None, save=True):
    GH = GATES[mode] * H
    lstm = mode == "lstm"
    xg = rng.standard_normal((T, B, GH)).astype(dt)
    w = (rng.standard_normal((GH, H)) * 0.5).astype(dt)
    b_hh = rng.standard_normal(GH).astype(dt) if bias else None
    h0 = rng.standard_normal((B, H)).astype(dt)
    c0 = rng.standard_normal((B, H)).astype(dt) if lstm else None
    lens = np.array(lengths, np.int64) if lengths is not None else None
    out = np.full((T, B, D * H), 7.0, dt)  # garbage: written or (other direction) left alone
    h_n = np.full((B, H), 7.0, dt)
    c_n = np.full((B, H), 7.0, dt) if lstm else None
    gates = np.full((T, B, GH), 7.0, dt) if save else None
    extra = np.full((T, B, H), 7.0, dt) if save and GATES[mode] > 1 else None
    return [mode, xg, w, b_hh, h0, c0, lens, out, h_n, c_n, gates, extra]


def _check(mode, dt, T, B, H, D, direction, bias=True, lengths=None, grads=(True, True, True),
           seed=0):
    """Forward (saving gates), then backward from its results; both equal the CPU table's."""
    rng = np.random.default_rng(seed)
    fa = _forward_args(rng, mode, T, B, H, D, dt, bias, lengths)
    cpu, _ = compare("rnn_forward", *fa, direction)
    _, xg, w, _, h0, c0, lens, out, _, _, gates, extra = cpu[:12]
    lstm, GH = mode == "lstm", GATES[mode] * H
    go = rng.standard_normal(out.shape).astype(dt) if grads[0] else None
    ghn = rng.standard_normal((B, H)).astype(dt) if grads[1] else None
    gcn = rng.standard_normal((B, H)).astype(dt) if grads[2] and lstm else None
    g = lambda *s: np.full(s, 7.0, dt)  # noqa: E731
    compare("rnn_backward", mode, go, ghn, gcn, w, h0, c0, lens, out, gates, extra,
            g(T, B, GH), g(GH, H), g(GH) if bias else None, g(GH) if bias else None, g(B, H),
            g(B, H) if lstm else None, direction)


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("mode", MODES)
def test_forward_direction(mode, dt):
    _check(mode, dt, T=4, B=2, H=5, D=1, direction=0)


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("mode", MODES)
def test_reverse_with_lengths(mode, dt):
    # second direction of a bidirectional layer; one empty sequence, one full, one short
    _check(mode, dt, T=4, B=3, H=3, D=2, direction=1, bias=False, lengths=[2, 0, 4], seed=1)


@pytest.mark.parametrize("mode", ["lstm", "gru"])
def test_lengths_forward_direction_and_missing_grads(mode):
    # only grad_out (no grad_h_n / grad_c_n): the carried gradient starts at zero
    _check(mode, np.float32, T=3, B=2, H=4, D=2, direction=0, lengths=[3, 1],
           grads=(True, False, False), seed=2)


@pytest.mark.parametrize("mode", MODES)
def test_inference_without_saved_gates(mode):
    rng = np.random.default_rng(3)
    fa = _forward_args(rng, mode, 3, 2, 4, 1, np.float32, save=False)
    compare("rnn_forward", *fa, 0)


def test_only_final_state_gradient_and_zero_steps():
    _check("gru", np.float64, T=3, B=2, H=4, D=1, direction=0, grads=(False, True, False))
    _check("lstm", np.float64, T=0, B=2, H=3, D=1, direction=0)  # h_n = h0, d W_hh = 0


def test_bad_input():
    from numba import cuda

    rng = np.random.default_rng(4)
    fa = _forward_args(rng, "lstm", 3, 2, 4, 1, np.float32)
    d = [cuda.to_device(a) if isinstance(a, np.ndarray) else a for a in fa]
    nc.rnn_forward(*d, 0)  # the arguments are right as they are
    with pytest.raises(TypeError, match="rnn_forward: xg .* host"):
        nc.rnn_forward(*d[:1], fa[1], *d[2:], 0)
    with pytest.raises(ValueError, match="mode must be"):
        nc.rnn_forward("lstmx", *d[1:], 0)
    with pytest.raises(ValueError, match="w_hh of shape"):
        nc.rnn_forward("gru", *d[1:], 0)
    with pytest.raises(ValueError, match="direction 1 must be in"):
        nc.rnn_forward(*d, 1)
    with pytest.raises(ValueError, match="c0 is required"):
        nc.rnn_forward(*d[:5], None, *d[6:], 0)
    with pytest.raises(TypeError, match="dtype mismatch"):
        nc.rnn_forward(*d[:4], cuda.to_device(fa[4].astype(np.float64)), *d[5:], 0)
    with pytest.raises(ValueError, match="extra must be None"):
        nc.rnn_forward(*d[:10], None, d[11], 0)
    with pytest.raises(IndexError, match=r"lengths\[1\] = 5"):
        nc.rnn_forward(*d[:6], cuda.to_device(np.array([1, 5], np.int64)), *d[7:], 0)
    with pytest.raises(TypeError, match="int64"):
        nc.rnn_forward(*d[:6], cuda.to_device(np.array([1, 2], np.int32)), *d[7:], 0)
    with pytest.raises(ValueError, match="grad_w_hh of shape"):
        nc.rnn_backward("lstm", None, None, None, d[2], d[4], d[5], None, d[7], d[10], d[11],
                        d[10], d[4], None, None, d[4], None, 0)
