"""scaled_dot_product_attention (fused kernels attention_forward / attention_backward)
against torch.nn.functional.scaled_dot_product_attention: values and gradients of q, k, v
over odd sizes, cross-attention, causal, bool / float masks (broadcast), scales, GQA, on
the AVX-512 and the portable (scalar) tile paths; float64 gradcheck; fully masked rows;
bad input. Dropout and memory tests live in test_attention_dropout.py."""

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import kiln
import kiln.nn.functional as F
from kiln import _cpu
from kiln.ops.attention import sdpa_composite

from helpers import assert_close

ISAS = ["avx512", "scalar"] if _cpu.supported_isa() == "avx512" else ["scalar"]


@pytest.fixture(params=ISAS)
def isa(request):
    old = _cpu.get_isa()
    _cpu.set_isa(request.param)
    yield request.param
    _cpu.set_isa(old)


def _run(shape_q, shape_k, shape_v, mask=None, causal=False, scale=None, gqa=False,
         dtype=np.float32, seed=0, rtol=1e-4):
    rng = np.random.default_rng(seed)
    arrs = [rng.standard_normal(s).astype(dtype) for s in (shape_q, shape_k, shape_v)]
    kq, kk, kv = [kiln.tensor(a, requires_grad=True) for a in arrs]
    tq, tk, tv = [torch.tensor(a, requires_grad=True) for a in arrs]
    km = None if mask is None else kiln.from_numpy(mask)
    tm = None if mask is None else torch.from_numpy(mask)
    ko = F.scaled_dot_product_attention(kq, kk, kv, attn_mask=km, is_causal=causal, scale=scale,
                                        enable_gqa=gqa)
    to = TF.scaled_dot_product_attention(tq, tk, tv, attn_mask=tm, is_causal=causal,
                                         scale=scale, enable_gqa=gqa)
    assert_close(ko, to, rtol=rtol, what="out")
    g = rng.standard_normal(tuple(to.shape)).astype(dtype)
    ko.backward(kiln.from_numpy(g))
    to.backward(torch.from_numpy(g))
    for name, a, b in (("grad q", kq, tq), ("grad k", kk, tk), ("grad v", kv, tv)):
        # an exactly-zero gradient (one key: softmax is constant) comes out as rounding noise
        atol = rtol * 0.1 * max(float(b.grad.abs().max()), 1.0)
        assert_close(a.grad, b.grad, rtol=rtol, atol=atol, what=name)
    return ko


@pytest.mark.parametrize("T", [1, 37, 129, 200])
@pytest.mark.parametrize("causal", [False, True])
def test_self_attention(isa, T, causal):
    _run((2, 3, T, 32), (2, 3, T, 32), (2, 3, T, 32), causal=causal)


@pytest.mark.parametrize("L,S", [(1, 37), (37, 1), (129, 200), (200, 129), (64, 64), (65, 63)])
@pytest.mark.parametrize("causal", [False, True])
def test_cross_attention(isa, L, S, causal):
    _run((1, 2, L, 16), (1, 2, S, 16), (1, 2, S, 24), causal=causal)


@pytest.mark.parametrize("D,Dv", [(1, 1), (7, 13), (64, 64), (100, 36), (256, 256)])
def test_head_dims(isa, D, Dv):
    _run((1, 2, 37, D), (1, 2, 45, D), (1, 2, 45, Dv))


@pytest.mark.parametrize("mshape", [(37, 50), (2, 1, 37, 50), (1, 3, 1, 50), (2, 3, 37, 1)])
@pytest.mark.parametrize("kind", ["bool", "float"])
def test_masks(isa, mshape, kind):
    rng = np.random.default_rng(3)
    if kind == "bool":
        mask = rng.random(mshape) > 0.3
        mask[..., 0] = True  # no fully masked row here (see test_fully_masked_rows)
    else:
        mask = (rng.standard_normal(mshape) * 2).astype(np.float32)
    _run((2, 3, 37, 16), (2, 3, 50, 16), (2, 3, 50, 16), mask=mask)


@pytest.mark.parametrize("scale", [0.01, 0.5, 2.0])
def test_scales(isa, scale):
    _run((2, 2, 70, 16), (2, 2, 70, 16), (2, 2, 70, 16), scale=scale, causal=scale == 0.5)


@pytest.mark.parametrize("Hq,Hk", [(4, 2), (6, 1), (8, 8)])
@pytest.mark.parametrize("causal", [False, True])
def test_gqa(isa, Hq, Hk, causal):
    _run((2, Hq, 67, 32), (2, Hk, 67, 32), (2, Hk, 67, 32), gqa=True, causal=causal)


def test_batch_dims_and_unbatched():
    _run((2, 3, 2, 9, 8), (2, 3, 2, 11, 8), (2, 3, 2, 11, 8))  # (N, M, H, L, E)
    _run((9, 8), (11, 8), (11, 4))  # (L, E): one head, no batch
    _run((3, 9, 8), (3, 11, 8), (3, 11, 4))


def test_threads_agree():
    """One thread and two (both backward strategies: whole units per thread and key tiles
    split with private dQ) give the same values."""
    outs = []
    for n in (1, 2):
        kiln.set_num_threads(n)
        try:
            for B in (1, 3):  # 1 unit < 2 threads: split; 3 units: per-unit
                outs.append(_run((B, 1, 300, 32), (B, 1, 300, 32), (B, 1, 300, 32), causal=True))
        finally:
            kiln.set_num_threads(2)
    assert_close(outs[0], outs[2].detach(), rtol=1e-6)


def test_fully_masked_rows(isa):
    """torch 2.13's SDPA returns 0 (and zero gradients) for a row with no key to attend."""
    mask = np.ones((1, 1, 40, 70), dtype=bool)
    mask[0, 0, [0, 5, 39]] = False
    out = _run((2, 2, 40, 16), (2, 2, 70, 16), (2, 2, 70, 16), mask=mask)
    assert (out.detach().numpy()[:, :, [0, 5, 39]] == 0).all()
    fm = np.where(mask, 0.0, -np.inf).astype(np.float32)
    _run((2, 2, 40, 16), (2, 2, 70, 16), (2, 2, 70, 16), mask=fm)


def test_float64_matches_torch():
    _run((2, 2, 37, 16), (2, 2, 45, 16), (2, 2, 45, 8), dtype=np.float64, causal=True, rtol=1e-10)


def test_composite_oracle():
    rng = np.random.default_rng(5)
    q, k, v = [kiln.from_numpy(rng.standard_normal((2, 4, 33, 8)).astype(np.float32))
               for _ in range(3)]
    k2, v2 = k[:, :2], v[:, :2]
    mask = kiln.from_numpy(rng.random((33, 33)) > 0.2)
    assert_close(F.scaled_dot_product_attention(q, k, v, attn_mask=mask),
                 sdpa_composite(q, k, v, attn_mask=mask), rtol=1e-5)
    assert_close(F.scaled_dot_product_attention(q, k2, v2, is_causal=True, enable_gqa=True),
                 sdpa_composite(q, k2, v2, is_causal=True, enable_gqa=True), rtol=1e-5)


@pytest.mark.parametrize("causal,masked,gqa", [(False, False, False), (True, False, True),
                                               (False, True, False)])
def test_gradcheck_float64(causal, masked, gqa):
    rng = np.random.default_rng(7)
    q = kiln.tensor(rng.standard_normal((1, 2, 5, 3)), requires_grad=True)
    k = kiln.tensor(rng.standard_normal((1, 1 if gqa else 2, 6, 3)), requires_grad=True)
    v = kiln.tensor(rng.standard_normal((1, 1 if gqa else 2, 6, 4)), requires_grad=True)
    mask = kiln.from_numpy(rng.standard_normal((5, 6))) if masked else None
    assert kiln.autograd.gradcheck(
        lambda a, b, c: F.scaled_dot_product_attention(a, b, c, attn_mask=mask,
                                                       is_causal=causal, enable_gqa=gqa),
        [q, k, v])


def test_float_mask_with_grad_uses_composite():
    rng = np.random.default_rng(8)
    arrs = [rng.standard_normal((1, 2, 6, 4)).astype(np.float32) for _ in range(3)]
    m = rng.standard_normal((6, 6)).astype(np.float32)
    km, tm = kiln.tensor(m, requires_grad=True), torch.tensor(m, requires_grad=True)
    ko = F.scaled_dot_product_attention(*[kiln.from_numpy(a) for a in arrs], attn_mask=km)
    to = TF.scaled_dot_product_attention(*[torch.from_numpy(a) for a in arrs], attn_mask=tm)
    ko.sum().backward()
    to.sum().backward()
    assert_close(ko, to)
    assert_close(km.grad, tm.grad)


def test_bad_input():
    q = kiln.randn(1, 2, 5, 4)
    with pytest.raises(ValueError, match="scaled_dot_product_attention.*enable_gqa"):
        F.scaled_dot_product_attention(q, kiln.randn(1, 1, 5, 4), kiln.randn(1, 1, 5, 4))
    with pytest.raises(ValueError, match="scaled_dot_product_attention.*enable_gqa"):
        F.scaled_dot_product_attention(q, kiln.randn(1, 3, 5, 4), kiln.randn(1, 3, 5, 4),
                                       enable_gqa=True)
    with pytest.raises(ValueError, match="key"):
        F.scaled_dot_product_attention(q, kiln.randn(1, 2, 5, 3), kiln.randn(1, 2, 5, 4))
    with pytest.raises(ValueError, match="value"):
        F.scaled_dot_product_attention(q, q, kiln.randn(1, 2, 6, 4))
    with pytest.raises(TypeError, match="dtype"):
        F.scaled_dot_product_attention(q, q.double(), q)
    with pytest.raises(TypeError, match="floating"):
        F.scaled_dot_product_attention(q, q, kiln.ones(1, 2, 5, 4, dtype=kiln.int64))
    with pytest.raises(ValueError, match="attn_mask"):
        F.scaled_dot_product_attention(q, q, q, attn_mask=kiln.ones(3, 5) > 0)
    with pytest.raises(ValueError, match="is_causal"):
        F.scaled_dot_product_attention(q, q, q, attn_mask=kiln.ones(5, 5) > 0, is_causal=True)
    with pytest.raises(ValueError, match="dropout_p"):
        F.scaled_dot_product_attention(q, q, q, dropout_p=1.5)
    with pytest.raises(ValueError, match="dimensions"):
        F.scaled_dot_product_attention(kiln.randn(4), q, q)
    # the kernels themselves name themselves and the shapes
    a = np.zeros((1, 2, 5, 4), np.float32)
    with pytest.raises(ValueError, match="attention_forward.*out"):
        _cpu.attention_forward(a, a, a, None, np.zeros((1, 2, 5, 3), np.float32),
                               np.zeros((1, 2, 5), np.float32), 1.0, False, 0.0, 0)
    with pytest.raises(TypeError, match="attention_forward"):
        _cpu.attention_forward(a, a.astype(np.float64), a, None, a.copy(),
                               np.zeros((1, 2, 5), np.float32), 1.0, False, 0.0, 0)


def test_empty():
    for L, S in ((0, 5), (5, 0)):
        q = kiln.zeros(1, 2, L, 4, requires_grad=True)
        k = kiln.zeros(1, 2, S, 4, requires_grad=True)
        v = kiln.zeros(1, 2, S, 4, requires_grad=True)
        o = F.scaled_dot_product_attention(q, k, v)
        t = TF.scaled_dot_product_attention(torch.zeros(1, 2, L, 4), torch.zeros(1, 2, S, 4),
                                            torch.zeros(1, 2, S, 4))
        assert tuple(o.shape) == tuple(t.shape)
        if L:
            assert_close(o, t)
        o.sum().backward()
        assert q.grad.shape == q.shape and (q.grad.numpy() == 0).all()
