"""Numba CUDA optimizer kernels (simulator) against the CPU table: sgd/adam/rmsprop/adagrad
steps over lists of float32 and float64 tensors with every flag, state_steps counters,
grad_norm for every norm_type (NaN included), grad_scale, grad_clamp, and bad input."""

import numpy as np
import pytest
from numba import cuda
from numba_helpers import compare, nc

# params start small (tensors(1e-3)) so that the update, not p, sets their size: a wrong
# factor in the update shows at the test tolerance
SHAPES = [((7,), np.float32), ((3, 5), np.float64), ((2, 3), np.float32)]
rng = np.random.default_rng(2)


def tensors(scale=1.0, positive=False):
    out = []
    for shape, dt in SHAPES:
        a = rng.standard_normal(shape) * scale
        out.append((np.abs(a) + 0.1 if positive else a).astype(dt))
    return out


def steps():
    return [np.array([0.0], np.float32), np.array([4.0], np.float64),
            np.array(2.0, np.float32)]  # PyTorch's 0-d float32 step, too


@pytest.mark.parametrize("momentum,dampening,nesterov,first_step",
                         [(0.0, 0.0, False, False), (0.9, 0.0, False, True),
                          (0.9, 0.1, False, False), (0.8, 0.0, True, False),
                          (0.8, 0.0, True, True)])
@pytest.mark.parametrize("weight_decay,maximize", [(0.0, False), (0.01, True)])
def test_sgd_step(momentum, dampening, nesterov, first_step, weight_decay, maximize):
    bufs = tensors() if momentum else []
    compare("sgd_step", tensors(1e-3), tensors(), bufs, 0.1, momentum, dampening, weight_decay,
            nesterov, maximize, first_step, atol=1e-6)


@pytest.mark.parametrize("decoupled,amsgrad,maximize,weight_decay,beta1",
                         [(False, False, False, 0.0, 0.9), (False, True, True, 0.01, 0.9),
                          (True, False, False, 0.01, 0.3), (True, True, False, 0.0, 0.3),
                          (False, False, True, 0.1, 0.6)])
def test_adam_step(decoupled, amsgrad, maximize, weight_decay, beta1):
    maxs = tensors(positive=True) if amsgrad else []
    compare("adam_step", tensors(1e-3), tensors(), tensors(), tensors(positive=True), maxs,
            steps(), 0.1, beta1, 0.999, 1e-8, weight_decay, decoupled, amsgrad, maximize,
            rtol=2e-4, atol=1e-6)


@pytest.mark.parametrize("centered,momentum,alpha", [(False, 0.0, 0.99), (True, 0.0, 0.3),
                                                     (False, 0.9, 0.3), (True, 0.9, 0.99)])
@pytest.mark.parametrize("weight_decay,maximize", [(0.0, False), (0.01, True)])
def test_rmsprop_step(centered, momentum, alpha, weight_decay, maximize):
    gas = [0.1 * t for t in tensors()] if centered else []
    bufs = tensors() if momentum else []
    compare("rmsprop_step", tensors(1e-3), tensors(), tensors(positive=True, scale=2.0), gas,
            bufs, steps(), 0.01, alpha, 1e-8, weight_decay, momentum, centered, maximize,
            rtol=2e-4, atol=1e-6)


@pytest.mark.parametrize("lr_decay,weight_decay,maximize", [(0.0, 0.0, False), (0.1, 0.01, True),
                                                            (0.05, 0.0, True)])
def test_adagrad_step(lr_decay, weight_decay, maximize):
    compare("adagrad_step", tensors(1e-3), tensors(), tensors(positive=True), steps(), 0.1,
            lr_decay, weight_decay, 1e-10, maximize, rtol=2e-4, atol=1e-6)


def test_steps_advance_over_several_calls():
    dp, dg, dm, dv, ds = ([cuda.to_device(a) for a in lst] for lst in
                          (tensors(), tensors(), tensors(), tensors(positive=True), steps()))
    for _ in range(3):
        nc.adam_step(dp, dg, dm, dv, [], ds, 0.01, 0.9, 0.999, 1e-8, 0.0, False, False, False)
    assert [float(s.copy_to_host().reshape(-1)[0]) for s in ds] == [3.0, 7.0, 5.0]


@pytest.mark.parametrize("norm_type", [2.0, 1.0, np.inf, -np.inf, 0.0, 3.5, 0.5])
@pytest.mark.parametrize("with_nan", [False, True])
def test_grad_norm(norm_type, with_nan):
    ts = tensors()
    ts[1][1, 2] = 0.0  # a zero for the 0-"norm"
    if with_nan:
        ts[2][1, 1] = np.nan
    compare("grad_norm", ts, np.zeros(1), norm_type, rtol=1e-10, atol=0)


def test_grad_norm_matches_torch():
    torch = pytest.importorskip("torch")
    ts = tensors()
    _, nb = compare("grad_norm", ts, np.zeros(1), 2.0)
    want = torch.nn.utils.get_total_norm([torch.tensor(t, dtype=torch.float64) for t in ts], 2.0)
    np.testing.assert_allclose(nb[1][0], want.item(), rtol=1e-12)


@pytest.mark.parametrize("norm_type", [2.0, -np.inf, np.inf])
def test_grad_norm_of_nothing(norm_type):
    compare("grad_norm", [np.zeros(0, np.float32)], np.full(1, 5.0), norm_type, atol=0)
    out = cuda.to_device(np.full(1, 5.0))
    nc.grad_norm([], out, norm_type)
    assert out.copy_to_host()[0] == 0.0


def test_grad_scale_and_clamp():
    ts = tensors(scale=3.0)
    ts[0][2] = np.nan
    compare("grad_scale", ts, 0.37, atol=0, rtol=0)
    compare("grad_clamp", ts, -0.5, 1.25, atol=0, rtol=0)
    compare("grad_clamp", ts, 1.0, -1.0, atol=0, rtol=0)  # min > max: every value is max


# ---- bad input --------------------------------------------------------------------------
def dl(ts):
    return [cuda.to_device(t) for t in ts]


def test_bad_input():
    p, g = dl(tensors()), dl(tensors())
    with pytest.raises(ValueError, match="sgd_step: grads has 2 arrays but params has 3"):
        nc.sgd_step(p, g[:2], [], 0.1, 0.0, 0.0, 0.0, False, False, False)
    with pytest.raises(ValueError, match="momentum_buffers must be empty"):
        nc.sgd_step(p, g, dl(tensors()), 0.1, 0.0, 0.0, 0.0, False, False, False)
    with pytest.raises(TypeError, match=r"params\[0\] .* host"):
        nc.sgd_step(tensors(), g, [], 0.1, 0.0, 0.0, 0.0, False, False, False)
    with pytest.raises(ValueError, match=r"shape mismatch: params\[1\] .* vs exp_avgs\[1\]"):
        bad = dl(tensors())
        bad[1] = cuda.to_device(np.zeros((5, 3)))
        nc.adam_step(p, g, bad, dl(tensors()), [], dl(steps()), 0.1, 0.9, 0.99, 1e-8, 0.0, False,
                     False, False)
    with pytest.raises(TypeError, match=r"dtype mismatch: params\[0\] .* vs grads\[0\]"):
        g2 = list(g)
        g2[0] = cuda.to_device(np.zeros(7))
        nc.adagrad_step(p, g2, dl(tensors()), dl(steps()), 0.1, 0.0, 0.0, 1e-10, False)
    st = dl(steps())
    with pytest.raises(ValueError, match=r"state_steps\[2\] .* must hold one value"):
        nc.rmsprop_step(p, g, dl(tensors()), [], [], st[:2] + [cuda.to_device(np.zeros(2))],
                        0.1, 0.99, 1e-8, 0.0, 0.0, False, False)
    assert [float(s.copy_to_host().reshape(-1)[0]) for s in st] == [0.0, 4.0, 2.0]  # unchanged
    with pytest.raises(TypeError, match=r"state_steps\[0\] .* float32 or float64"):
        nc.adagrad_step(p, g, dl(tensors()), [cuda.to_device(np.zeros(1, np.int64))] + st[1:],
                        0.1, 0.0, 0.0, 1e-10, False)
    with pytest.raises(TypeError, match="1-element float64"):
        nc.grad_norm(p, cuda.to_device(np.zeros(1, np.float32)), 2.0)
    with pytest.raises(ValueError, match="norm_type is NaN"):
        nc.grad_norm(p, cuda.to_device(np.zeros(1)), float("nan"))
    with pytest.raises(TypeError, match=r"grad_clamp: tensors\[0\] .* float32 or float64"):
        nc.grad_clamp([cuda.to_device(np.zeros(3, np.int32))], 0.0, 1.0)
