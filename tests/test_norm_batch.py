"""batch_norm and group_norm (kernels + ops) against torch.nn.functional: values, gradients
for input / weight / bias, training and eval, running-statistic updates over several steps,
(N, C) and (N, C, *) inputs, every ISA path, float64 gradcheck, thread-count independence
and bad configurations."""

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


def close(a, e, rtol, what):  # judged against max(1, the tensor's scale): sums cancel
    ev = e.detach().numpy() if hasattr(e, "detach") else e
    atol = rtol * 0.1 * max(1.0, float(np.abs(ev).max(initial=0)))
    assert_close(a, e, rtol=rtol, atol=atol, what=what)


def _pair(arr, grad=True):
    return kiln.tensor(arr, requires_grad=grad), torch.tensor(arr, requires_grad=grad)


BN_SHAPES = [(4, 3), (2, 5, 7), (3, 4, 5, 6), (1, 3, 9), (64, 130), (5, 2, 1, 1), (2, 8, 3, 3, 2)]


@pytest.mark.parametrize("shape", BN_SHAPES)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batch_norm_vs_torch(isa, shape, training, affine, dtype):
    rng = np.random.default_rng(sum(shape))
    c = shape[1]
    x = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    kx, tx = _pair(x)
    kw, tw = _pair(rng.standard_normal(c).astype(dtype)) if affine else (None, None)
    kb, tb = _pair(rng.standard_normal(c).astype(dtype)) if affine else (None, None)
    rm0, rv0 = rng.standard_normal(c).astype(dtype), rng.random(c).astype(dtype) + 0.5
    krm, krv = kiln.tensor(rm0.copy()), kiln.tensor(rv0.copy())
    trm, trv = torch.tensor(rm0.copy()), torch.tensor(rv0.copy())
    rtol = 1e-4 if dtype == np.float32 else 1e-10
    ky = F.batch_norm(kx, krm, krv, kw, kb, training, 0.3, 1e-4)
    ty = TF.batch_norm(tx, trm, trv, tw, tb, training, 0.3, 1e-4)
    close(ky, ty, rtol, "y")
    close(krm, trm, rtol, "running_mean")
    close(krv, trv, rtol, "running_var")
    ky.backward(kiln.tensor(g))
    ty.backward(torch.tensor(g))
    close(kx.grad, tx.grad, rtol, "grad x")
    if affine:
        close(kw.grad, tw.grad, rtol, "grad w")
        close(kb.grad, tb.grad, rtol, "grad b")


def test_batch_norm_running_stats_over_steps_and_no_stats():
    rng = np.random.default_rng(5)
    krm, krv = kiln.zeros(6), kiln.ones(6)
    trm, trv = torch.zeros(6), torch.ones(6)
    for step in range(5):
        x = (rng.standard_normal((8, 6, 3, 3)) * (step + 1) + step).astype(np.float32)
        ky = F.batch_norm(kiln.tensor(x), krm, krv, training=True, momentum=0.1)
        ty = TF.batch_norm(torch.tensor(x), trm, trv, training=True, momentum=0.1)
        close(ky, ty, 1e-4, "y")
    close(krm, trm, 1e-5, "running_mean")
    close(krv, trv, 1e-5, "running_var")
    # eval with the accumulated statistics
    x = rng.standard_normal((4, 6, 2, 2)).astype(np.float32)
    close(F.batch_norm(kiln.tensor(x), krm, krv), TF.batch_norm(torch.tensor(x), trm, trv), 1e-5,
          "eval")
    # training without running statistics
    close(F.batch_norm(kiln.tensor(x), None, None, training=True),
          TF.batch_norm(torch.tensor(x), None, None, training=True), 1e-4, "no stats")


def test_batch_norm_gradcheck_float64():
    x = kiln.randn(4, 3, 2, dtype=kiln.float64, requires_grad=True)
    w = kiln.randn(3, dtype=kiln.float64, requires_grad=True)
    b = kiln.randn(3, dtype=kiln.float64, requires_grad=True)
    assert kiln.autograd.gradcheck(
        lambda a, c, d: F.batch_norm(a, None, None, c, d, training=True), [x, w, b])
    rm, rv = kiln.randn(3, dtype=kiln.float64), kiln.rand(3, dtype=kiln.float64) + 0.5
    assert kiln.autograd.gradcheck(lambda a, c, d: F.batch_norm(a, rm, rv, c, d), [x, w, b])
    x2 = kiln.randn(5, 3, dtype=kiln.float64, requires_grad=True)
    assert kiln.autograd.gradcheck(lambda a: F.batch_norm(a, None, None, training=True), [x2])


def test_batch_norm_same_at_1_and_2_threads():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((16, 32, 40, 40)).astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    old = _cpu.get_num_threads()
    res = []
    try:
        for n in (1, 2):
            _cpu.set_num_threads(n)
            kx = kiln.tensor(x, requires_grad=True)
            w = kiln.ones(32, requires_grad=True)
            y = F.batch_norm(kx, None, None, w, None, training=True)
            y.backward(kiln.tensor(g))
            res.append((y.detach().numpy(), kx.grad.numpy(), w.grad.numpy()))
    finally:
        _cpu.set_num_threads(old)
    for a, b in zip(*res):
        np.testing.assert_array_equal(a, b)


def test_batch_norm_bad_inputs():
    x = kiln.randn(4, 3, 5)
    with pytest.raises(ValueError, match="running_mean"):
        F.batch_norm(x, kiln.zeros(4), kiln.ones(3), training=True)
    with pytest.raises(ValueError, match="weight"):
        F.batch_norm(x, None, None, kiln.ones(5), training=True)
    with pytest.raises(ValueError, match="training=False"):
        F.batch_norm(x, None, None)
    with pytest.raises(ValueError, match="more than 1 value"):
        F.batch_norm(kiln.randn(1, 3), None, None, training=True)
    with pytest.raises(ValueError, match="shape"):
        F.batch_norm(kiln.randn(4), None, None, training=True)
    a = np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError, match="batch_norm"):
        _cpu.batch_norm(a, None, None, None, None, np.empty_like(a), np.empty(4, np.float32),
                        np.empty(3, np.float32), True, 0.1, 1e-5)
    with pytest.raises(ValueError, match="evaluation"):
        _cpu.batch_norm(a, None, None, None, None, np.empty_like(a), np.empty(3, np.float32),
                        np.empty(3, np.float32), False, 0.1, 1e-5)


GN_CASES = [((2, 6, 5), 3), ((1, 4, 3, 3), 1), ((3, 8, 2, 5), 8), ((2, 6), 2), ((4, 32, 7, 7), 4),
            ((2, 6, 3), 3)]


@pytest.mark.parametrize("shape,groups", GN_CASES)
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_group_norm_vs_torch(isa, shape, groups, affine, dtype):
    rng = np.random.default_rng(sum(shape) + groups)
    c = shape[1]
    x = (rng.standard_normal(shape) * 2 - 1).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    kx, tx = _pair(x)
    kw, tw = _pair(rng.standard_normal(c).astype(dtype)) if affine else (None, None)
    kb, tb = _pair(rng.standard_normal(c).astype(dtype)) if affine else (None, None)
    rtol = 1e-4 if dtype == np.float32 else 1e-10
    ky = F.group_norm(kx, groups, kw, kb, 1e-5)
    ty = TF.group_norm(tx, groups, tw, tb, 1e-5)
    close(ky, ty, rtol, "y")
    ky.backward(kiln.tensor(g))
    ty.backward(torch.tensor(g))
    close(kx.grad, tx.grad, rtol, "grad x")
    if affine:
        close(kw.grad, tw.grad, rtol, "grad w")
        close(kb.grad, tb.grad, rtol, "grad b")


def test_group_norm_gradcheck_float64_and_errors():
    x = kiln.randn(2, 4, 3, dtype=kiln.float64, requires_grad=True)
    w = kiln.randn(4, dtype=kiln.float64, requires_grad=True)
    b = kiln.randn(4, dtype=kiln.float64, requires_grad=True)
    assert kiln.autograd.gradcheck(lambda a, c, d: F.group_norm(a, 2, c, d), [x, w, b])
    with pytest.raises(ValueError, match="divisible by num_groups"):
        F.group_norm(kiln.randn(2, 6, 3), 4)
    with pytest.raises(ValueError, match="weight"):
        F.group_norm(kiln.randn(2, 6, 3), 3, kiln.ones(3))
    with pytest.raises(ValueError, match="more than 1 value"):  # as torch: one value per group
        F.group_norm(kiln.randn(1, 3, 1), 3)
    a = np.zeros((2, 6, 3), np.float32)
    with pytest.raises(ValueError, match="group_norm"):
        _cpu.group_norm(a, None, None, np.empty_like(a), np.empty((2, 4), np.float32),
                        np.empty((2, 4), np.float32), 4, 1e-5)
