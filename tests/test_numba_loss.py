"""Numba CUDA cross_entropy (forward and backward) against the CPU table."""

import numpy as np
import pytest
from numba_helpers import compare, cuda, nc

from kiln import _cpu

DTYPES = [np.float32, np.float64]


def _case(dtype, N=3, C=7, prob=False, weight=False, ignore=True, seed=0, scale=2.0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((N, C)) * scale).astype(dtype)
    if prob:
        t = rng.random((N, C)).astype(dtype)
        t /= t.sum(1, keepdims=True)
    else:
        t = rng.integers(0, C, N).astype(np.int64)
        if ignore and N > 2:
            t[1] = -100
    w = (rng.random(C) + 0.5).astype(dtype) if weight else None
    return x, t, w


def _outputs(x, reduction):
    N = x.shape[0]
    loss = np.empty((N,) if reduction == "none" else (), x.dtype)
    return loss, np.empty(N, x.dtype)


def _check(x, t, w, reduction, eps, ignore_index=-100, rtol=1e-4):
    loss, lse = _outputs(x, reduction)
    compare("cross_entropy", x, t, w, loss, lse, ignore_index, eps, reduction, rtol=rtol)
    _cpu.cross_entropy(x, t, w, loss, lse, ignore_index, eps, reduction)
    g = np.asarray(np.random.default_rng(9).standard_normal(loss.shape) + 1.5, x.dtype)
    compare("cross_entropy_backward", g, x, t, w, lse, np.empty_like(x), ignore_index, eps,
            reduction, rtol=rtol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("weight,eps", [(False, 0.0), (True, 0.2)])
def test_class_targets(dtype, reduction, weight, eps):
    x, t, w = _case(dtype, weight=weight)
    _check(x, t, w, reduction, eps)


@pytest.mark.parametrize("weight,eps", [(True, 0.0), (False, 0.2)])
def test_class_targets_weight_or_smoothing(weight, eps):
    x, t, w = _case(np.float32, weight=weight, seed=3)
    _check(x, t, w, "mean", eps)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_probability_targets(dtype, reduction):
    x, t, w = _case(dtype, prob=True, weight=True, N=3, C=19)
    _check(x, t, w, reduction, 0.1)


@pytest.mark.parametrize("dtype", DTYPES)
def test_probability_targets_plain(dtype):
    x, t, w = _case(dtype, prob=True, N=3, C=6)
    _check(x, t, w, "mean", 0.0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_wide_rows_and_other_ignore_index(dtype):
    x, t, w = _case(dtype, N=3, C=37, weight=True, ignore=False)
    t[0] = 5
    _check(x, t, w, "mean", 0.05, ignore_index=5)


@pytest.mark.parametrize("dtype", DTYPES)
def test_large_logits(dtype):
    # float32 rows with |lse| > 16 recompute the log-sum-exp in the backward, as on the CPU
    x, t, w = _case(dtype, N=3, C=6, scale=1.0)
    x[0] += 300.0
    x[2] -= 40.0
    _check(x, t, w, "sum", 0.1)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_all_ignored_and_empty(reduction):
    x, t, w = _case(np.float64, N=3, C=4)
    t[:] = -100
    _check(x, t, w, reduction, 0.0)  # mean: 0 / 0 = NaN, as PyTorch
    e = np.zeros((0, 4))
    loss, lse = _outputs(e, reduction)
    compare("cross_entropy", e, np.zeros(0, np.int64), None, loss, lse, -100, 0.0, reduction)


def test_bad_input():
    d = cuda.to_device
    x = d(np.zeros((3, 4), np.float32))
    lse = d(np.zeros(3, np.float32))
    loss = d(np.zeros((), np.float32))
    t = d(np.array([0, 4, 1], np.int64))
    with pytest.raises(IndexError, match=r"cross_entropy: target 4 at row 1 is out of bounds for "
                                         r"C = 4 classes \(ignore_index = -100\)"):
        nc.cross_entropy(x, t, None, loss, lse, -100, 0.0, "mean")
    with pytest.raises(IndexError, match="cross_entropy_backward: target -1 at row 2"):
        nc.cross_entropy_backward(loss, x, d(np.array([0, 1, -1], np.int64)), None, lse, x,
                                  -100, 0.0, "mean")
    t = d(np.array([0, 1, 2], np.int64))
    with pytest.raises(ValueError, match="cross_entropy: reduction must be 'none', 'mean' or "
                                         "'sum', got 'avg'"):
        nc.cross_entropy(x, t, None, loss, lse, -100, 0.0, "avg")
    with pytest.raises(ValueError, match=r"cross_entropy: loss of shape \(\) .* must have shape "
                                         r"\(3,\) for reduction 'none'"):
        nc.cross_entropy(x, t, None, loss, lse, -100, 0.0, "none")
    with pytest.raises(ValueError, match=r"class-index target of shape \(2,\) .* must have shape"):
        nc.cross_entropy(x, d(np.zeros(2, np.int64)), None, loss, lse, -100, 0.0, "mean")
    with pytest.raises(ValueError, match=r"probability target of shape \(3, 5\)"):
        nc.cross_entropy(x, d(np.zeros((3, 5), np.float32)), None, loss, lse, -100, 0.0, "mean")
    with pytest.raises(TypeError, match="target .* int32 must be int64 class indices"):
        nc.cross_entropy(x, d(np.zeros(3, np.int32)), None, loss, lse, -100, 0.0, "mean")
    with pytest.raises(ValueError, match=r"weight of shape \(5,\) .* must have shape \(4,\)"):
        nc.cross_entropy(x, t, d(np.ones(5, np.float32)), loss, lse, -100, 0.0, "mean")
    with pytest.raises(TypeError, match="dtype mismatch: logits .* vs weight"):
        nc.cross_entropy(x, t, d(np.ones(4)), loss, lse, -100, 0.0, "mean")
    with pytest.raises(ValueError, match="label_smoothing must be between 0.0 and 1.0"):
        nc.cross_entropy(x, t, None, loss, lse, -100, 1.5, "mean")
    with pytest.raises(ValueError, match=r"must be 2-D \(N, C\)"):
        nc.cross_entropy(d(np.zeros(4, np.float32)), t, None, loss, lse, -100, 0.0, "mean")
    with pytest.raises(TypeError, match="cross_entropy: logits .* host"):
        nc.cross_entropy(np.zeros((3, 4), np.float32), t, None, loss, lse, -100, 0.0, "mean")
    with pytest.raises(ValueError, match="cross_entropy_backward: shape mismatch: logits"):
        nc.cross_entropy_backward(loss, x, t, None, lse, d(np.zeros((3, 5), np.float32)), -100,
                                  0.0, "mean")
