"""attention_forward / attention_backward on the Numba CUDA table against kiln._cpu.

Shapes stay tiny (the simulator runs one Python thread per CUDA thread); ``TILE`` is lowered
in some cases so that several query and key tiles (and the online-softmax rescale between
them) are exercised with T <= 13.
"""

from __future__ import annotations

import numpy as np
import pytest
from numba_helpers import compare, nc, run_numba

from kiln import _cpu
from kiln.backends.numba_cuda import attention as nb_attn

DTYPES = [np.float32, np.float64]


def _inputs(rng, B, Hq, Hkv, L, S, D, Dv, dt):
    q = rng.standard_normal((B, Hq, L, D)).astype(dt)
    k = rng.standard_normal((B, Hkv, S, D)).astype(dt)
    v = rng.standard_normal((B, Hkv, S, Dv)).astype(dt)
    return q, k, v


def _check(rng, B, Hq, Hkv, L, S, D, Dv, dt, mask=None, causal=False, p=0.0, seed=1234,
           scale=None):
    """Forward and backward agree with the CPU table (outputs, lse and all gradients)."""
    q, k, v = _inputs(rng, B, Hq, Hkv, L, S, D, Dv, dt)
    scale = 1 / np.sqrt(D) if scale is None else scale
    out = np.full((B, Hq, L, Dv), 7.0, dt)  # garbage: every element must be written
    lse = np.full((B, Hq, L), 7.0, dt)
    cpu, _ = compare("attention_forward", q, k, v, mask, out, lse, scale, causal, p, seed)
    out, lse = cpu[4], cpu[5]
    go = rng.standard_normal(out.shape).astype(dt)
    grads = [np.full(a.shape, 7.0, dt) for a in (q, k, v)]
    compare("attention_backward", go, q, k, v, mask, out, lse, *grads, scale, causal, p, seed)
    return out, lse


@pytest.mark.parametrize("L,S,dt", [(1, 1, np.float64), (5, 13, np.float32),
                                    (13, 5, np.float64)])
def test_plain(dt, L, S):
    _check(np.random.default_rng(L * S), 2, 2, 2, L, S, 8, 8, dt)


@pytest.mark.parametrize("dt", DTYPES)
def test_gqa_and_dv(dt):
    # 4 query heads on 2 kv heads; Dv != D
    _check(np.random.default_rng(1), 1, 4, 2, 5, 7, 16, 8, dt)


@pytest.mark.parametrize("L,S,dt", [(13, 13, np.float32), (13, 13, np.float64),
                                    (5, 13, np.float64), (13, 5, np.float32)])
def test_causal_multi_tile(dt, L, S, monkeypatch):
    monkeypatch.setattr(nb_attn, "TILE", 4)  # several query and key tiles per head
    _check(np.random.default_rng(2), 1, 2, 1, L, S, 8, 8, dt, causal=True)


@pytest.mark.parametrize("dt", DTYPES)
def test_multi_tile_online_softmax(dt, monkeypatch):
    monkeypatch.setattr(nb_attn, "TILE", 4)
    # large scale: the running max changes between key tiles, so the rescale matters
    _check(np.random.default_rng(3), 1, 2, 2, 13, 13, 8, 16, dt, scale=3.0)


@pytest.mark.parametrize("dt", DTYPES)
def test_bool_mask_with_dead_rows(dt):
    rng = np.random.default_rng(4)
    mask = rng.random((1, 4, 5, 13)) > 0.4
    mask[0, 1, 2, :] = False  # a fully masked row: out 0, lse -inf, zero gradients
    out, lse = _check(rng, 2, 4, 2, 5, 13, 8, 8, dt, mask=mask)
    assert np.isneginf(lse[:, 1, 2]).all() and (out[:, 1, 2] == 0).all()


@pytest.mark.parametrize("shape,dt", [((2, 1, 1, 13), np.float32), ((1, 2, 5, 1), np.float64),
                                      ((2, 2, 5, 13), np.float32)])
def test_float_mask_broadcast(dt, shape):
    rng = np.random.default_rng(5)
    mask = rng.standard_normal(shape).astype(dt)
    mask[..., 0] = -np.inf  # additive -inf on the first key
    _check(rng, 2, 2, 1, 5, 13, 8, 8, dt, mask=mask)


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("causal", [False, True])
def test_dropout_mask_matches_cpu(dt, causal, monkeypatch):
    monkeypatch.setattr(nb_attn, "TILE", 4)
    rng = np.random.default_rng(6)
    out, _ = _check(rng, 1, 2, 1, 13, 7, 8, 8, dt, causal=causal, p=0.4, seed=2**40 + 12345)
    # the mask really is applied: dropout changes the output
    q, k, v = _inputs(np.random.default_rng(6), 1, 2, 1, 13, 7, 8, 8, dt)
    ref = np.empty_like(out)
    _cpu.attention_forward(q, k, v, None, ref, np.empty(ref.shape[:3], dt), 1 / np.sqrt(8),
                           causal, 0.0, 0)
    assert not np.allclose(ref, out)


@pytest.mark.parametrize("p", [1.0, 0.0])
def test_dropout_edges(p):
    _check(np.random.default_rng(7), 1, 1, 1, 5, 5, 8, 8, np.float32, p=p, seed=3)


def test_empty_shapes():
    rng = np.random.default_rng(8)
    _check(rng, 1, 2, 1, 0, 5, 8, 8, np.float32)  # no queries: gradients zero
    # no keys: out 0, lse -inf, gradients zero
    out, lse = _check(rng, 1, 2, 1, 5, 0, 8, 8, np.float64)
    assert np.isneginf(lse).all() and (out == 0).all()


def test_bad_input():
    dt = np.float32
    q, k, v = _inputs(np.random.default_rng(9), 1, 2, 1, 5, 5, 8, 8, dt)
    out, lse = np.empty((1, 2, 5, 8), dt), np.empty((1, 2, 5), dt)
    from numba import cuda

    d = [cuda.to_device(a) for a in (q, k, v, out, lse)]
    with pytest.raises(TypeError, match="attention_forward: q .* host"):
        nc.attention_forward(q, d[1], d[2], None, d[3], d[4], 1.0, False, 0.0, 0)
    with pytest.raises(TypeError, match="dtype mismatch"):
        nc.attention_forward(d[0], cuda.to_device(k.astype(np.float64)), d[2], None, d[3], d[4],
                             1.0, False, 0.0, 0)
    with pytest.raises(TypeError, match="float32 or float64"):
        nc.attention_forward(*(cuda.to_device(a.astype(np.int64)) for a in (q, k, v)), None,
                             d[3], d[4], 1.0, False, 0.0, 0)
    with pytest.raises(ValueError, match="multiple of key/value heads"):
        nc.attention_forward(cuda.to_device(np.zeros((1, 3, 5, 8), dt)), cuda.to_device(
            np.zeros((1, 2, 5, 8), dt)), cuda.to_device(np.zeros((1, 2, 5, 8), dt)), None,
            cuda.to_device(np.zeros((1, 3, 5, 8), dt)), cuda.to_device(np.zeros((1, 3, 5), dt)),
            1.0, False, 0.0, 0)
    with pytest.raises(ValueError, match="incompatible"):
        nc.attention_forward(d[0], cuda.to_device(np.zeros((1, 1, 5, 4), dt)), d[2], None, d[3],
                             d[4], 1.0, False, 0.0, 0)
    with pytest.raises(ValueError, match="does not broadcast"):
        nc.attention_forward(*d[:3], cuda.to_device(np.ones((1, 1, 3, 5), bool)), d[3], d[4],
                             1.0, False, 0.0, 0)
    with pytest.raises(TypeError, match="mask"):
        nc.attention_forward(*d[:3], cuda.to_device(np.ones((1, 1, 5, 5))), d[3], d[4], 1.0,
                             False, 0.0, 0)
    with pytest.raises(ValueError, match="dropout_p"):
        nc.attention_forward(*d[:3], None, d[3], d[4], 1.0, False, 1.5, 0)
    with pytest.raises(ValueError, match="lse of shape"):
        nc.attention_forward(*d[:3], None, d[3], cuda.to_device(np.zeros((1, 2, 4), dt)), 1.0,
                             False, 0.0, 0)
    gq = cuda.to_device(np.zeros_like(q))
    with pytest.raises(ValueError, match="grad_k of shape"):
        nc.attention_backward(d[3], *d[:3], None, d[3], d[4], gq, gq, d[2], 1.0, False, 0.0, 0)


def test_run_numba_writes_outputs():
    # the outputs come back from the device (not just equal to stale host copies)
    rng = np.random.default_rng(10)
    q, k, v = _inputs(rng, 1, 1, 1, 3, 3, 8, 8, np.float32)
    args, _ = run_numba("attention_forward", q, k, v, None, np.zeros((1, 1, 3, 8), np.float32),
                        np.zeros((1, 1, 3), np.float32), 0.5, False, 0.0, 0)
    out, lse = args[4], args[5]
    s = 0.5 * q[0, 0] @ k[0, 0].T
    w = np.exp(s - s.max(-1, keepdims=True))
    np.testing.assert_allclose(out[0, 0], (w / w.sum(-1, keepdims=True)) @ v[0, 0], rtol=1e-5)
    np.testing.assert_allclose(lse[0, 0], np.log(np.exp(s).sum(-1)), rtol=1e-5)
