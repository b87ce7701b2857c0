"""kiln._cpu cross_entropy / cross_entropy_backward vs torch.nn.functional.cross_entropy.

The whole option matrix (class-index or probability targets, ignore_index, class weights,
label smoothing, reductions none/mean/sum, float32/float64) on every ISA path, plus large
logits, threaded sizes, all-ignored batches and bad arguments.
"""

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kiln import _cpu

ISAS = [i for i in ("avx512", "avx2", "scalar")
        if ["scalar", "avx2", "avx512"].index(i) <= ["scalar", "avx2", "avx512"].index(_cpu.supported_isa())]
TOL = {np.float32: dict(rtol=1e-5, atol=1e-6), np.float64: dict(rtol=1e-11, atol=1e-13)}


@pytest.fixture(params=ISAS)
def isa(request):
    old = _cpu.get_isa()
    _cpu.set_isa(request.param)
    yield request.param
    _cpu.set_isa(old)


def kiln_ce(logits, target, weight, ignore_index, eps, reduction, grad):
    N = logits.shape[0]
    loss = np.full((N,) if reduction == "none" else (), 9.0, logits.dtype)
    lse = np.full(N, 9.0, logits.dtype)
    _cpu.cross_entropy(logits, target, weight, loss, lse, ignore_index, eps, reduction)
    gl = np.full_like(logits, 9.0)
    _cpu.cross_entropy_backward(grad, logits, target, weight, lse, gl, ignore_index, eps, reduction)
    return loss, lse, gl


def torch_ce(logits, target, weight, ignore_index, eps, reduction, grad):
    # float64 reference on the same inputs (see test_kernels_activation.py for why).
    x = torch.from_numpy(logits.astype(np.float64)).requires_grad_(True)
    t = torch.from_numpy(target if target.dtype == np.int64 else target.astype(np.float64))
    w = None if weight is None else torch.from_numpy(weight.astype(np.float64))
    loss = F.cross_entropy(x, t, weight=w, ignore_index=ignore_index, label_smoothing=eps,
                           reduction=reduction)
    (gx,) = torch.autograd.grad(loss, x, torch.from_numpy(np.asarray(grad, np.float64)))
    return loss.detach().numpy(), torch.logsumexp(x.detach(), 1).numpy(), gx.numpy()


def make_case(N, C, dtype, prob, ignore_index, seed=0, scale=2.0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, scale, (N, C)).astype(dtype)
    if prob:
        p = rng.uniform(0, 1, (N, C))
        target = (p / p.sum(1, keepdims=True)).astype(dtype)
    else:
        target = rng.integers(0, C, N).astype(np.int64)
        target[::4] = ignore_index  # every 4th row ignored (ignore_index may be a real class)
    weight = rng.uniform(0.2, 2.0, C).astype(dtype)
    return logits, target, weight


def compare(logits, target, weight, ignore_index, eps, reduction, seed=1):
    dtype = logits.dtype.type
    N = logits.shape[0]
    rng = np.random.default_rng(seed)
    grad = rng.uniform(-1, 1, N).astype(dtype) if reduction == "none" else np.array(0.7, dtype)
    loss, lse, gl = kiln_ce(logits, target, weight, ignore_index, eps, reduction, grad)
    rl, rlse, rg = torch_ce(logits, target, weight, ignore_index, eps, reduction, grad)
    msg = f"prob={target.dtype != np.int64} w={weight is not None} eps={eps} red={reduction}"
    assert loss.shape == rl.shape, msg
    np.testing.assert_allclose(loss, rl, equal_nan=True, err_msg="loss " + msg, **TOL[dtype])
    np.testing.assert_allclose(lse, rlse, err_msg="lse " + msg, **TOL[dtype])
    np.testing.assert_allclose(gl, rg, equal_nan=True, err_msg="grad " + msg, **TOL[dtype])
    return loss, gl


# ignore_index only applies to class-index targets; 2 is a real class, so it tests that the
# ignore check wins over the class.
MATRIX = [m for m in itertools.product([False, True], [False, True], [0.0, 0.1], ["none", "mean", "sum"],
                                       [-100, 2]) if not (m[0] and m[4] != -100)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("prob,weighted,eps,reduction,ignore_index", MATRIX)
def test_cross_entropy_matrix(prob, weighted, eps, reduction, ignore_index, dtype, isa):
    logits, target, weight = make_case(13, 7, dtype, prob, ignore_index)
    compare(logits, target, weight if weighted else None, ignore_index, eps, reduction)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("prob", [False, True])
@pytest.mark.parametrize("NC", [(1, 1), (5, 17), (300, 1000), (3, 100003)])
def test_cross_entropy_sizes(NC, prob, dtype, isa):
    N, C = NC
    logits, target, weight = make_case(N, C, dtype, prob, -100, seed=N + C)
    for reduction in ("none", "mean"):
        compare(logits, target, weight, -100, 0.05, reduction)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("prob", [False, True])
def test_cross_entropy_large_logits(prob, dtype, isa):
    logits, target, weight = make_case(9, 33, dtype, prob, -100, scale=1.0)
    logits = (logits * 1e4).astype(dtype)
    logits[0, :] = 1e4  # ties at the max
    logits[1, :] = -1e4
    for reduction in ("none", "sum"):
        loss, gl = compare(logits, target, weight, -100, 0.1, reduction)
        assert np.all(np.isfinite(loss)) and np.all(np.isfinite(gl))


def test_cross_entropy_all_ignored_mean_is_nan():
    logits = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    target = np.full(4, -100, np.int64)
    for eps in (0.0, 0.2):
        loss, lse, gl = kiln_ce(logits, target, None, -100, eps, "mean", np.array(1.0, np.float32))
        assert np.isnan(loss)
        assert np.isnan(F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(target),
                                        label_smoothing=eps).item())
        loss, lse, gl = kiln_ce(logits, target, None, -100, eps, "sum", np.array(1.0, np.float32))
        assert loss == 0.0 and np.all(gl == 0.0)


def test_cross_entropy_empty_batch():
    logits = np.zeros((0, 5), np.float32)
    target = np.zeros(0, np.int64)
    loss, lse, gl = kiln_ce(logits, target, None, -100, 0.0, "mean", np.array(1.0, np.float32))
    assert np.isnan(loss)
    loss, lse, gl = kiln_ce(logits, target, None, -100, 0.0, "sum", np.array(1.0, np.float32))
    assert loss == 0.0 and gl.shape == (0, 5)


def test_cross_entropy_known_value():
    # Two classes, logits (0, log 3): p = (1/4, 3/4); loss for class 1 = log(4/3).
    logits = np.array([[0.0, np.log(3.0)]], np.float64)
    loss, lse, gl = kiln_ce(logits, np.array([1], np.int64), None, -100, 0.0, "mean", np.array(1.0))
    assert abs(loss - np.log(4 / 3)) < 1e-15 and abs(lse[0] - np.log(4.0)) < 1e-15
    np.testing.assert_allclose(gl, [[0.25, -0.25]], rtol=1e-15)


def test_cross_entropy_threads_agree():
    logits, target, weight = make_case(256, 500, np.float32, False, -100, seed=3)
    outs = []
    for nt in (1, 2):
        _cpu.set_num_threads(nt)
        outs.append(kiln_ce(logits, target, weight, -100, 0.1, "none", np.ones(256, np.float32)))
    _cpu.set_num_threads(2)
    for a, b in zip(outs[0], outs[1]):
        np.testing.assert_array_equal(a, b)


def test_cross_entropy_bad_arguments():
    logits = np.zeros((4, 3), np.float32)
    loss, lse = np.zeros((), np.float32), np.zeros(4, np.float32)
    ce = _cpu.cross_entropy
    with pytest.raises(IndexError, match=r"cross_entropy.*target 3 .*C = 3"):
        ce(logits, np.array([0, 1, 3, 2], np.int64), None, loss, lse, -100, 0.0, "mean")
    with pytest.raises(IndexError, match=r"cross_entropy.*target -1 .*C = 3"):
        ce(logits, np.array([0, 1, -1, 2], np.int64), None, loss, lse, -100, 0.0, "mean")
    with pytest.raises(IndexError, match=r"cross_entropy_backward.*target 7"):
        _cpu.cross_entropy_backward(np.zeros((), np.float32), logits, np.array([0, 7, 0, 0], np.int64), None,
                                    lse, np.zeros_like(logits), -100, 0.0, "mean")
    with pytest.raises(ValueError, match=r"cross_entropy.*target of shape \(4,\).*float32.*\(4, 3\)"):
        ce(logits, np.zeros(4, np.float32), None, loss, lse, -100, 0.0, "mean")
    with pytest.raises(ValueError, match=r"cross_entropy.*target of shape \(4, 1\).*\(4,\)"):
        ce(logits, np.zeros((4, 1), np.int64), None, loss, lse, -100, 0.0, "mean")
    with pytest.raises(ValueError, match=r"cross_entropy.*target of shape \(5,\)"):
        ce(logits, np.zeros(5, np.int64), None, loss, lse, -100, 0.0, "mean")
    with pytest.raises(TypeError, match=r"cross_entropy.*target.*int32"):
        ce(logits, np.zeros(4, np.int32), None, loss, lse, -100, 0.0, "mean")
    with pytest.raises(ValueError, match=r"cross_entropy.*weight of shape \(4,\).*\(3,\)"):
        ce(logits, np.zeros(4, np.int64), np.ones(4, np.float32), loss, lse, -100, 0.0, "mean")
    with pytest.raises(TypeError, match=r"cross_entropy.*dtype mismatch.*weight"):
        ce(logits, np.zeros(4, np.int64), np.ones(3, np.float64), loss, lse, -100, 0.0, "mean")
    with pytest.raises(ValueError, match=r"cross_entropy.*reduction"):
        ce(logits, np.zeros(4, np.int64), None, loss, lse, -100, 0.0, "avg")
    with pytest.raises(ValueError, match=r"cross_entropy.*loss of shape \(\).*\(4,\)"):
        ce(logits, np.zeros(4, np.int64), None, loss, lse, -100, 0.0, "none")
    with pytest.raises(ValueError, match=r"cross_entropy.*label_smoothing"):
        ce(logits, np.zeros(4, np.int64), None, loss, lse, -100, 1.5, "mean")
    with pytest.raises(ValueError, match=r"cross_entropy.*logits of shape \(12,\).*2-D"):
        ce(np.zeros(12, np.float32), np.zeros(12, np.int64), None, loss, np.zeros(12, np.float32), -100, 0.0,
           "mean")
    with pytest.raises(TypeError, match=r"cross_entropy.*logits.*float32 or float64"):
        ce(np.zeros((4, 3), np.int64), np.zeros(4, np.int64), None, loss, lse, -100, 0.0, "mean")
    with pytest.raises(ValueError, match=r"cross_entropy_backward.*grad_logits.*shape mismatch|shape mismatch.*grad_logits"):
        _cpu.cross_entropy_backward(np.zeros((), np.float32), logits, np.zeros(4, np.int64), None, lse,
                                    np.zeros((3, 4), np.float32), -100, 0.0, "mean")
