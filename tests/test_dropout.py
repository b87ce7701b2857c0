"""dropout and the feature dropouts: the Philox mask (kiln's convention, common/philox.h)
checked against a pure-Python Philox; keep fraction ~ 1 - p and scale 1 / (1 - p) on a
large tensor; same mask for the same kiln.manual_seed, at 1 and 2 threads and on every ISA
path; backward uses the forward's mask; p = 0, p = 1, eval mode and inplace as PyTorch."""

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import kiln
import kiln.nn.functional as F
from kiln import _cpu

ORDER = ["scalar", "avx2", "avx512"]
ISAS = [i for i in ORDER if ORDER.index(i) <= ORDER.index(_cpu.supported_isa())]


def philox_word(seed: int, idx: int) -> int:
    """Pure-Python Philox4x32-10: word (idx & 3) of block idx >> 2 (common/philox.h)."""
    m0, m1, w0, w1, mask = 0xD2511F53, 0xCD9E8D57, 0x9E3779B9, 0xBB67AE85, 0xFFFFFFFF
    k = [seed & mask, seed >> 32]
    block = idx >> 2
    c = [block & mask, block >> 32, 0, 0]
    for r in range(10):
        if r:
            k = [(k[0] + w0) & mask, (k[1] + w1) & mask]
        p0, p1 = m0 * c[0], m1 * c[2]
        c = [(p1 >> 32) ^ c[1] ^ k[0], p1 & mask, (p0 >> 32) ^ c[3] ^ k[1], p0 & mask]
    return c[idx & 3]


def _kept(seed, idx, p):
    return (philox_word(seed, idx) >> 8) * 2.0**-24 >= np.float32(p)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mask_follows_the_philox_convention(dtype):
    n = 1000
    x = np.arange(1, n + 1, dtype=dtype)
    y = np.empty_like(x)
    seed, p = 0xDEADBEEF12345, 0.3
    _cpu.dropout(x, y, seed, p, 1)
    kept = np.array([_kept(seed, i, p) for i in range(n)])
    np.testing.assert_array_equal(y != 0, kept)
    np.testing.assert_allclose(y[kept], x[kept] / (1 - p), rtol=1e-6)
    # feature dropout: one draw per run of `inner` elements
    _cpu.dropout(x, y, seed, p, 10)
    fk = np.repeat([_kept(seed, f, p) for f in range(n // 10)], 10)
    np.testing.assert_array_equal(y != 0, fk)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_keep_fraction_and_scale(p):
    x = kiln.ones(1 << 20)
    y = F.dropout(x, p).numpy()
    keep = (y != 0).mean()
    assert abs(keep - (1 - p)) < 5 * np.sqrt(p * (1 - p) / y.size), keep
    np.testing.assert_allclose(y[y != 0], np.float32(1 / (1 - p)), rtol=1e-6)


def test_same_seed_same_mask_and_next_call_differs():
    x = kiln.randn(513, 77)
    kiln.manual_seed(7)
    a = F.dropout(x, 0.4).numpy()
    b = F.dropout(x, 0.4).numpy()
    kiln.manual_seed(7)
    c = F.dropout(x, 0.4).numpy()
    np.testing.assert_array_equal(a, c)
    assert (a != b).any()


def test_mask_same_across_threads_isas_offsets():
    x = np.random.default_rng(0).standard_normal(300_007).astype(np.float32)
    outs = []
    old_t, old_i = _cpu.get_num_threads(), _cpu.get_isa()
    try:
        for isa in ISAS:
            _cpu.set_isa(isa)
            for n in (1, 2):
                _cpu.set_num_threads(n)
                y = np.empty_like(x)
                _cpu.dropout(x, y, 99, 0.25, 1)
                outs.append(y)
                yd = np.empty(x.size, np.float64)
                _cpu.dropout(x.astype(np.float64), yd, 99, 0.25, 1)
                np.testing.assert_array_equal(yd != 0, y != 0)  # float64 takes the same mask
    finally:
        _cpu.set_num_threads(old_t)
        _cpu.set_isa(old_i)
    for y in outs[1:]:
        np.testing.assert_array_equal(y, outs[0])
    # a spot check far into the array, past many 64-element groups
    for i in (0, 3, 64, 65, 299_999, 300_006):
        assert (outs[0][i] != 0) == _kept(99, i, 0.25)


def test_backward_uses_the_forward_mask():
    x = kiln.randn(37, 41, requires_grad=True)
    y = F.dropout(x, 0.3)
    g = np.random.default_rng(1).standard_normal((37, 41)).astype(np.float32)
    y.backward(kiln.tensor(g))
    mask = y.detach().numpy() != 0
    np.testing.assert_array_equal(x.grad.numpy() != 0, mask)
    np.testing.assert_allclose(x.grad.numpy()[mask], g[mask] / 0.7, rtol=1e-6)
    # create_graph: the gradient is itself a recorded (masked, linear) op
    x2 = kiln.randn(50, requires_grad=True)
    y2 = F.dropout(x2, 0.5)
    v = kiln.randn(50, requires_grad=True)
    (gx,) = kiln.autograd.grad(y2, [x2], grad_outputs=v, create_graph=True)
    gx.sum().backward()  # d/dv sum(mask * v / (1 - p)) = mask / (1 - p)
    np.testing.assert_array_equal(v.grad.numpy(), (y2.detach().numpy() != 0) * 2.0)


def test_p0_p1_eval_inplace():
    x = kiln.randn(10, 10, requires_grad=True)
    assert F.dropout(x, 0.0) is x
    assert F.dropout(x, 0.7, training=False) is x
    y = F.dropout(x, 1.0)
    assert (y.detach().numpy() == 0).all()
    y.sum().backward()
    assert (x.grad.numpy() == 0).all()
    t = torch.randn(4, 4)
    assert (TF.dropout(t, 1.0) == 0).all()  # the same as torch
    z = kiln.randn(1000)
    before = z.numpy().copy()
    out = F.dropout(z, 0.5, inplace=True)
    assert out is z
    kept = z.numpy() != 0
    np.testing.assert_allclose(z.numpy()[kept], before[kept] * 2, rtol=1e-6)
    leaf = kiln.randn(5, requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf"):
        F.dropout(leaf, 0.5, inplace=True)


def test_gradcheck_with_fixed_mask():
    x = kiln.randn(6, 5, dtype=kiln.float64, requires_grad=True)

    def f(a):
        kiln.manual_seed(3)  # the same mask in every evaluation
        return F.dropout(a, 0.4)

    assert kiln.autograd.gradcheck(f, [x])


@pytest.mark.parametrize("fn,tfn,shape,red", [
    (F.dropout1d, TF.dropout1d, (4, 16, 9), (-1,)),
    (F.dropout1d, TF.dropout1d, (16, 9), (-1,)),
    (F.dropout2d, TF.dropout2d, (3, 16, 4, 5), (-1, -2)),
    (F.dropout3d, TF.dropout3d, (2, 8, 2, 3, 4), (-1, -2, -3)),
])
def test_feature_dropout(fn, tfn, shape, red):
    x = kiln.ones(*shape, requires_grad=True)
    y = fn(x, 0.5)
    v = y.detach().numpy()
    whole = (v == 0).all(red) | (v == 2).all(red)
    assert whole.all()
    assert 0 < (v == 0).mean() < 1
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), v)
    assert tfn(torch.ones(*shape), 0.5).shape == tuple(y.shape)
    with pytest.raises(ValueError, match="input"):
        fn(kiln.ones(3), 0.5)


def test_bad_p_and_types():
    for p in (-0.1, 1.5):
        with pytest.raises(ValueError, match="between 0 and 1"):
            F.dropout(kiln.ones(3), p)
        with pytest.raises(ValueError, match="dropout"):
            _cpu.dropout(np.ones(3, np.float32), np.empty(3, np.float32), 1, p, 1)
    with pytest.raises(TypeError):
        F.dropout(kiln.tensor([1, 2]), 0.5)
    with pytest.raises(ValueError, match="inner"):
        _cpu.dropout(np.ones(10, np.float32), np.empty(10, np.float32), 1, 0.5, 3)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dropped_inf_and_nan_give_nan_on_every_isa(dtype):
    # PyTorch computes x * mask / (1 - p): a dropped inf or NaN becomes NaN, never 0
    x = np.tile(np.array([np.inf, -np.inf, np.nan, 1.0], dtype), 40)
    old = _cpu.get_isa()
    try:
        for isa in ISAS:
            _cpu.set_isa(isa)
            out = np.empty_like(x)
            _cpu.dropout(x, out, 77, 0.5)
            kept = np.empty_like(x)
            _cpu.dropout(np.ones_like(x), kept, 77, 0.5)
            drop = kept == 0
            assert drop.any() and (~drop).any()
            want = np.where(drop, x * 0, x * 2)
            np.testing.assert_array_equal(out, want, err_msg=isa)
    finally:
        _cpu.set_isa(old)
