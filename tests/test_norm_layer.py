"""layer_norm (kernel + op) against torch.nn.functional.layer_norm: values and gradients for
input, weight and bias over random shapes (odd sizes, one row, multi-dim normalized_shape,
with and without affine), on every ISA path and in float32 / float64; float64 gradcheck;
weight gradients identical at 1 and 2 threads; bad configurations raise."""

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


def _run(shape, ns, affine, bias, dtype, seed, eps=1e-5, shift=0.0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 2 + shift).astype(dtype)
    w = rng.standard_normal(ns).astype(dtype) if affine else None
    b = rng.standard_normal(ns).astype(dtype) if bias else None
    g = rng.standard_normal(shape).astype(dtype)
    kx = kiln.tensor(x, requires_grad=True)
    kw = kiln.tensor(w, requires_grad=True) if w is not None else None
    kb = kiln.tensor(b, requires_grad=True) if b is not None else None
    # far from zero, float32 torch loses more digits than kiln (double sums): judge both
    # against torch in float64 on the same data there
    tdt = torch.float64 if shift else None
    tx = torch.tensor(x, dtype=tdt, requires_grad=True)
    tw = torch.tensor(w, dtype=tdt, requires_grad=True) if w is not None else None
    tb = torch.tensor(b, dtype=tdt, requires_grad=True) if b is not None else None
    ky = F.layer_norm(kx, ns, kw, kb, eps)
    ty = TF.layer_norm(tx, ns, tw, tb, eps)
    rtol = 1e-4 if dtype == np.float32 else 1e-10

    def close(a, e, what):  # judged against max(1, the tensor's scale): sums cancel
        atol = rtol * 0.1 * max(1.0, float(np.abs(e.detach().numpy()).max(initial=0)))
        assert_close(a, e, rtol=rtol, atol=atol, what=what)

    close(ky, ty, "y")
    ky.backward(kiln.tensor(g))
    ty.backward(torch.tensor(g, dtype=tdt))
    close(kx.grad, tx.grad, "grad x")
    if w is not None:
        close(kw.grad, tw.grad, "grad w")
    if b is not None:
        close(kb.grad, tb.grad, "grad b")


CASES = [((7, 5), (5,)), ((1, 1), (1,)), ((3, 4, 33), (33,)), ((2, 3, 5, 6), (5, 6)),
         ((129,), (129,)), ((16, 257), (257,)), ((300, 128), (128,)), ((64, 1024), (1024,))]


@pytest.mark.parametrize("shape,ns", CASES)
@pytest.mark.parametrize("affine,bias", [(True, True), (False, False), (True, False),
                                         (False, True)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_layer_norm_vs_torch(isa, shape, ns, affine, bias, dtype):
    _run(shape, ns, affine, bias, dtype, seed=len(shape) * 7 + shape[-1])


@pytest.mark.parametrize("seed", range(6))
def test_layer_norm_random_configs(seed):
    rng = np.random.default_rng(100 + seed)
    nd = int(rng.integers(1, 4))
    shape = tuple(int(s) for s in rng.integers(1, 40, size=nd))
    k = int(rng.integers(1, nd + 1))
    _run(shape, shape[nd - k:], bool(rng.integers(2)), bool(rng.integers(2)), np.float32, seed,
         eps=float(rng.choice([1e-5, 1e-3, 0.1])), shift=float(rng.choice([0.0, 100.0])))


def test_layer_norm_gradcheck_float64():
    x = kiln.randn(3, 2, 4, dtype=kiln.float64, requires_grad=True)
    w = kiln.randn(2, 4, dtype=kiln.float64, requires_grad=True)
    b = kiln.randn(2, 4, dtype=kiln.float64, requires_grad=True)
    assert kiln.autograd.gradcheck(lambda a, c, d: F.layer_norm(a, (2, 4), c, d), [x, w, b])
    assert kiln.autograd.gradcheck(lambda a: F.layer_norm(a, 4), [x])


def test_layer_norm_weight_grad_same_at_1_and_2_threads():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((700, 96)).astype(np.float32)
    g = rng.standard_normal((700, 96)).astype(np.float32)
    w = rng.standard_normal(96).astype(np.float32)
    mean, rstd, out = np.empty(700, np.float32), np.empty(700, np.float32), np.empty_like(x)
    _cpu.layer_norm(x, w, None, out, mean, rstd, 1e-5)
    old = _cpu.get_num_threads()
    res = []
    try:
        for n in (1, 2):
            _cpu.set_num_threads(n)
            gx, gw, gb = np.empty_like(x), np.empty_like(w), np.empty_like(w)
            _cpu.layer_norm_backward(g, x, mean, rstd, w, gx, gw, gb)
            res.append((gx, gw, gb))
    finally:
        _cpu.set_num_threads(old)
    for a, b in zip(*res):
        np.testing.assert_array_equal(a, b)


def test_layer_norm_constant_rows_and_no_grad_outputs():
    x = np.full((4, 8), 3.0, np.float32)
    out, m, r = np.empty_like(x), np.empty(4, np.float32), np.empty(4, np.float32)
    _cpu.layer_norm(x, None, None, out, m, r, 1e-5)
    assert (out == 0).all() and np.allclose(r, 1 / np.sqrt(1e-5), rtol=1e-5)
    gx = np.empty_like(x)
    _cpu.layer_norm_backward(np.ones_like(x), x, m, r, None, gx, None, None)  # only gx
    assert np.abs(gx).max() < 1e-3


def test_layer_norm_bad_inputs():
    x = kiln.randn(3, 4)
    with pytest.raises(ValueError, match="normalized_shape"):
        F.layer_norm(x, (5,))
    with pytest.raises(ValueError, match="normalized_shape"):
        F.layer_norm(x, (2, 3, 4))
    with pytest.raises(ValueError, match="weight"):
        F.layer_norm(x, (4,), kiln.ones(3))
    with pytest.raises(TypeError, match="weight"):
        F.layer_norm(x, (4,), kiln.ones(4, dtype=kiln.float64))
    with pytest.raises(TypeError, match="floating"):
        F.layer_norm(kiln.tensor([[1, 2]]), (2,))
    a = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match="layer_norm"):  # 12 elements do not split into 5 rows
        _cpu.layer_norm(a, None, None, np.empty_like(a), np.empty(5, np.float32),
                        np.empty(5, np.float32), 1e-5)
    with pytest.raises(TypeError, match="layer_norm"):
        _cpu.layer_norm(a, None, None, np.empty_like(a), np.empty(3), np.empty(3), 1e-5)


def test_layer_norm_empty_batch():
    x = kiln.randn(0, 4, requires_grad=True)
    y = F.layer_norm(x, (4,))
    assert tuple(y.shape) == (0, 4)
