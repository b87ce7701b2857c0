"""Pooling (kernels + ops) against torch.nn.functional: max_pool2d / max_pool1d (indices
included), avg_pool2d / avg_pool1d, adaptive_avg_pool2d / 1d -- values and gradients over
random configurations (odd sizes, batch 1, unbatched input, ceil_mode, padding, dilation,
count_include_pad, divisor_override), on every ISA path and in float32 / float64; NaN
propagation; float64 gradcheck; bad configurations raise as in PyTorch."""

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import kiln
import kiln.nn.functional as F
from kiln import _cpu

from helpers import assert_close

ORDER = ["scalar", "avx2", "avx512"]
ISAS = [i for i in ORDER if ORDER.index(i) <= ORDER.index(_cpu.supported_isa())]


@pytest.fixture(params=ISAS)
def isa(request):
    old = _cpu.get_isa()
    _cpu.set_isa(request.param)
    yield request.param
    _cpu.set_isa(old)


def _check(kfn, tfn, x, rtol=1e-5, seed=0, indices=False):
    kx = kiln.tensor(x, requires_grad=True)
    tx = torch.tensor(x, requires_grad=True)
    ko, to = kfn(kx), tfn(tx)
    if indices:
        ko, ki = ko
        to, ti = to
        np.testing.assert_array_equal(ki.numpy(), ti.numpy())
    assert_close(ko, to, rtol=rtol, what="forward")
    g = np.random.default_rng(seed).standard_normal(tuple(to.shape)).astype(x.dtype)
    ko.backward(kiln.tensor(g))
    to.backward(torch.tensor(g))
    assert_close(kx.grad, tx.grad, rtol=rtol, what="grad")


def _random_cfg(rng, ndim=2):
    k = tuple(int(v) for v in rng.integers(1, 5, size=ndim))
    s = tuple(int(v) for v in rng.integers(1, 4, size=ndim))
    p = tuple(int(rng.integers(0, kk // 2 + 1)) for kk in k)
    d = tuple(int(v) for v in rng.integers(1, 3, size=ndim))
    return k, s, p, d, bool(rng.integers(2))


def _shape(rng, k, d, ndim=2):
    lead = [(1, 3), (2, 3), (3,), (1, 1)][int(rng.integers(4))]
    spatial = tuple(int(d[i] * (k[i] - 1) + 1 + rng.integers(0, 12)) for i in range(ndim))
    return lead + spatial


@pytest.mark.parametrize("seed", range(40))
def test_max_pool2d_random(seed):
    rng = np.random.default_rng(seed)
    k, s, p, d, ceil = _random_cfg(rng)
    x = rng.standard_normal(_shape(rng, k, d)).astype(np.float32)
    if seed % 4 == 0:
        x = np.round(x * 2) / 2  # ties: the first maximum wins, as in torch
    _check(lambda t: F.max_pool2d(t, k, s, p, d, ceil, return_indices=True),
           lambda t: TF.max_pool2d(t, k, s, p, d, ceil, return_indices=True), x, seed=seed,
           indices=True)


@pytest.mark.parametrize("seed", range(40))
def test_avg_pool2d_random(seed):
    rng = np.random.default_rng(1000 + seed)
    k, s, p, _, ceil = _random_cfg(rng)
    cip = bool(rng.integers(2))
    div = [None, None, 3][seed % 3]
    x = rng.standard_normal(_shape(rng, k, (1, 1))).astype(np.float32)
    _check(lambda t: F.avg_pool2d(t, k, s, p, ceil, cip, div),
           lambda t: TF.avg_pool2d(t, k, s, p, ceil, cip, div), x, seed=seed)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cfg", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1),
                                 dict(kernel_size=(3, 2), stride=(1, 2), ceil_mode=True),
                                 dict(kernel_size=5, stride=1, padding=2)])
def test_pools_every_isa(isa, dtype, cfg):
    x = np.random.default_rng(7).standard_normal((2, 3, 37, 300)).astype(dtype)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    _check(lambda t: F.max_pool2d(t, return_indices=True, **cfg),
           lambda t: TF.max_pool2d(t, return_indices=True, **cfg), x, rtol, indices=True)
    _check(lambda t: F.avg_pool2d(t, **cfg), lambda t: TF.avg_pool2d(t, **cfg), x, rtol)
    _check(lambda t: F.max_pool2d(t, dilation=2, **cfg),
           lambda t: TF.max_pool2d(t, dilation=2, **cfg), x, rtol)
    for out in [(1, 1), (7, 7), (5, 300), (37, 23), (40, 301)]:
        _check(lambda t, o=out: F.adaptive_avg_pool2d(t, o),
               lambda t, o=out: TF.adaptive_avg_pool2d(t, o), x, rtol)


@pytest.mark.parametrize("seed", range(12))
def test_pool1d_random(seed):
    rng = np.random.default_rng(2000 + seed)
    k, s, p, d, ceil = _random_cfg(rng, 1)
    x = rng.standard_normal(_shape(rng, k, d, 1)).astype(np.float32)
    _check(lambda t: F.max_pool1d(t, k, s, p, d, ceil, return_indices=True),
           lambda t: TF.max_pool1d(t, k, s, p, d, ceil, return_indices=True), x, indices=True)
    cip = bool(rng.integers(2))
    _check(lambda t: F.avg_pool1d(t, k, s, p, ceil, cip),
           lambda t: TF.avg_pool1d(t, k, s, p, ceil, cip), x)
    o = int(rng.integers(1, x.shape[-1] + 3))
    _check(lambda t: F.adaptive_avg_pool1d(t, o), lambda t: TF.adaptive_avg_pool1d(t, o), x)


def test_adaptive_output_sizes():
    x = np.random.default_rng(3).standard_normal((2, 3, 9, 13)).astype(np.float32)
    for out in [1, 4, (None, 5), (3, None), (9, 13), (20, 2)]:
        _check(lambda t, o=out: F.adaptive_avg_pool2d(t, o),
               lambda t, o=out: TF.adaptive_avg_pool2d(t, o), x)
    _check(lambda t: F.adaptive_avg_pool2d(t, 3), lambda t: TF.adaptive_avg_pool2d(t, 3), x[0])


def test_unbatched_3d_input():
    x = np.random.default_rng(4).standard_normal((3, 10, 11)).astype(np.float32)
    _check(lambda t: F.max_pool2d(t, 3, 2, 1, return_indices=True),
           lambda t: TF.max_pool2d(t, 3, 2, 1, return_indices=True), x, indices=True)
    _check(lambda t: F.avg_pool2d(t, 2, ceil_mode=True), lambda t: TF.avg_pool2d(t, 2, ceil_mode=True), x)


def test_max_pool_nan_and_inf():
    x = np.random.default_rng(5).standard_normal((1, 2, 6, 6)).astype(np.float32)
    x[0, 0, 1, 1] = np.nan
    x[0, 0, 4, 4] = np.nan
    x[0, 0, 4, 5] = np.nan
    x[0, 1, :3, :3] = -np.inf
    for cfg in [dict(kernel_size=2), dict(kernel_size=3, stride=1, padding=1)]:
        ko, ki = F.max_pool2d(kiln.tensor(x), return_indices=True, **cfg)
        to, ti = TF.max_pool2d(torch.tensor(x), return_indices=True, **cfg)
        assert_close(ko, to)
        np.testing.assert_array_equal(ki.numpy(), ti.numpy())


@pytest.mark.parametrize("shape", [(2, 3, 28, 28), (1, 2, 9, 35), (3, 1, 2, 64), (1, 1, 5, 2),
                                   (2, 2, 10, 66), (1, 1, 7, 33)])
def test_max_pool2d_2x2_stride2(isa, shape):
    # the AVX-512 float32 fast path (whole planes, 16 outputs a vector; chunk edges at
    # OW = 1, 16, 17, 32, 33; odd H and W leave the last row / column out)
    rng = np.random.default_rng(sum(shape))
    x = np.round(rng.standard_normal(shape) * 2).astype(np.float32) / 2  # ties
    _check(lambda t: F.max_pool2d(t, 2, return_indices=True),
           lambda t: TF.max_pool2d(t, 2, return_indices=True), x, indices=True)
    _check(lambda t: F.max_pool2d(t, 2, ceil_mode=True, return_indices=True),
           lambda t: TF.max_pool2d(t, 2, ceil_mode=True, return_indices=True), x, indices=True)


def test_max_pool2d_2x2_every_nan_tie_pattern(isa):
    # every assignment of {NaN, -inf, 0, 1} to the four taps of a window: the first
    # maximum wins, a NaN always wins (so the last NaN does), as torch's sequential scan
    import itertools

    vals = [np.nan, -np.inf, 0.0, 1.0]
    combos = list(itertools.product(vals, repeat=4))
    x = np.empty((1, 1, 2, 2 * len(combos)), np.float32)
    for w, (a, b, c, d) in enumerate(combos):
        x[0, 0, 0, 2 * w: 2 * w + 2] = a, b
        x[0, 0, 1, 2 * w: 2 * w + 2] = c, d
    ko, ki = F.max_pool2d(kiln.tensor(x), 2, return_indices=True)
    to, ti = TF.max_pool2d(torch.tensor(x), 2, return_indices=True)
    np.testing.assert_array_equal(ko.numpy(), to.numpy())  # NaN == NaN here
    np.testing.assert_array_equal(ki.numpy(), ti.numpy())


def test_gradcheck_float64():
    x = kiln.randn(1, 2, 5, 6, dtype=kiln.float64, requires_grad=True)
    assert kiln.autograd.gradcheck(lambda a: F.max_pool2d(a, 2, 1, 1, ceil_mode=True), [x])
    assert kiln.autograd.gradcheck(
        lambda a: F.avg_pool2d(a, 3, 2, 1, ceil_mode=True, count_include_pad=False), [x])
    assert kiln.autograd.gradcheck(lambda a: F.adaptive_avg_pool2d(a, (3, 4)), [x])
    y = kiln.randn(2, 7, dtype=kiln.float64, requires_grad=True)
    assert kiln.autograd.gradcheck(lambda a: F.max_pool1d(a, 3, 2, 1), [y])
    assert kiln.autograd.gradcheck(lambda a: F.avg_pool1d(a, 2, ceil_mode=True), [y])


def test_same_at_1_and_2_threads():
    x = np.random.default_rng(6).standard_normal((8, 16, 33, 33)).astype(np.float32)
    old = _cpu.get_num_threads()
    res = []
    try:
        for n in (1, 2):
            _cpu.set_num_threads(n)
            kx = kiln.tensor(x, requires_grad=True)
            (F.max_pool2d(kx, 3, 2, 1).sum() + F.avg_pool2d(kx, 3, 1, 1).sum()).backward()
            res.append(kx.grad.numpy())
    finally:
        _cpu.set_num_threads(old)
    np.testing.assert_array_equal(res[0], res[1])


def test_bad_configs_raise_like_torch():
    x = kiln.randn(1, 2, 6, 6)
    t = torch.randn(1, 2, 6, 6)
    bad = [dict(kernel_size=2, padding=2), dict(kernel_size=3, padding=2),
           dict(kernel_size=7), dict(kernel_size=0)]
    for cfg in bad:
        with pytest.raises(RuntimeError):
            TF.max_pool2d(t, **cfg)
        with pytest.raises(ValueError, match="max_pool2d"):
            F.max_pool2d(x, **cfg)
        with pytest.raises(ValueError, match="avg_pool2d"):
            F.avg_pool2d(x, **cfg)
    with pytest.raises(ValueError, match="divisor"):
        F.avg_pool2d(x, 2, divisor_override=0)
    with pytest.raises(ValueError, match="input"):
        F.max_pool2d(kiln.randn(6, 6), 2)
    with pytest.raises(ValueError, match="input"):
        F.max_pool1d(kiln.randn(2, 3, 4, 5), 2)
    with pytest.raises(TypeError, match="floating"):
        F.avg_pool2d(kiln.tensor([[[1, 2], [3, 4]]]), 2)
    a = np.zeros((1, 4, 4), np.float32)
    with pytest.raises(ValueError, match="too large"):  # an output torch could not produce
        _cpu.max_pool2d(a, np.empty((1, 5, 2), np.float32), None, 2, 2, 2, 2, 0, 0, 1, 1)
    with pytest.raises(TypeError, match="int64"):
        _cpu.max_pool2d(a, np.empty((1, 2, 2), np.float32), np.empty((1, 2, 2), np.int32),
                        2, 2, 2, 2, 0, 0, 1, 1)
