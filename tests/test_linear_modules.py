"""nn.Linear and nn.Bilinear (and F.bilinear) against torch.nn with copied weights:
outputs and parameter/input gradients to 1e-5, state_dict keys, PyTorch's default
initialisation bounds, repr, dtypes, bad shapes; float64 gradcheck of bilinear."""

import math

import numpy as np
import pytest
import torch

import kiln
import kiln.nn.functional as F
from kiln import nn

from helpers import assert_close


def _copy(kmod, tmod):
    """torch -> kiln through state_dict (the same keys)."""
    kmod.load_state_dict({k: v.detach().numpy() for k, v in tmod.state_dict().items()})


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(5, 7), (2, 3, 7), (7,), (0, 7)])
def test_linear_matches_torch(bias, shape):
    t = torch.nn.Linear(7, 4, bias=bias)
    k = nn.Linear(7, 4, bias=bias)
    assert list(k.state_dict()) == list(t.state_dict())
    _copy(k, t)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    kx, tx = kiln.from_numpy(x.copy()).requires_grad_(), torch.from_numpy(x.copy()).requires_grad_()
    ko, to = k(kx), t(tx)
    assert_close(ko, to)
    g = np.random.default_rng(1).standard_normal(tuple(to.shape)).astype(np.float32)
    ko.backward(kiln.from_numpy(g))
    to.backward(torch.from_numpy(g))
    assert_close(kx.grad, tx.grad)
    assert_close(k.weight.grad, t.weight.grad)
    if bias:
        assert_close(k.bias.grad, t.bias.grad)
    else:
        assert k.bias is None


def test_linear_default_init_like_torch():
    kiln.manual_seed(0)
    k = nn.Linear(400, 300)
    bound = 1 / math.sqrt(400)
    w, b = k.weight.data, k.bias.data
    assert w.dtype == np.float32 and w.shape == (300, 400) and b.shape == (300,)
    assert np.abs(w).max() <= bound and np.abs(b).max() <= bound
    # U(-b, b): std b / sqrt(3); 120k samples pin it to well under 1%
    assert abs(w.std() / (bound / math.sqrt(3)) - 1) < 0.01
    assert abs(w.mean()) < 0.01 * bound
    kiln.manual_seed(0)
    assert np.array_equal(nn.Linear(400, 300).weight.data, w)  # seeded: reproducible
    assert isinstance(k.weight, nn.Parameter) and k.weight.requires_grad
    assert [n for n, _ in k.named_parameters()] == ["weight", "bias"]


def test_linear_dtype_and_repr():
    k = nn.Linear(3, 2, bias=False, dtype=kiln.float64)
    assert k.weight.dtype == kiln.float64
    assert repr(k) == repr(torch.nn.Linear(3, 2, bias=False))
    assert repr(nn.Linear(3, 2)) == "Linear(in_features=3, out_features=2, bias=True)"
    k.reset_parameters()
    with pytest.raises(ValueError, match=r"linear: input of shape \(2, 5\) and weight of shape "
                                         r"\(2, 3\) don't match"):
        k(kiln.zeros(2, 5, dtype=kiln.float64))
    with pytest.raises(ValueError, match="out_features must be a non-negative int"):
        nn.Linear(3, -1)


def test_linear_zero_in_features():
    t, k = torch.nn.Linear(0, 3), nn.Linear(0, 3)
    assert (k.bias.data == 0).all()  # bound 0, as in torch
    _copy(k, t)
    assert_close(k(kiln.zeros(2, 0)), t(torch.zeros(2, 0)))


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("batch", [(6,), (2, 3), ()])
def test_bilinear_matches_torch(bias, batch):
    t = torch.nn.Bilinear(4, 5, 3, bias=bias)
    k = nn.Bilinear(4, 5, 3, bias=bias)
    assert list(k.state_dict()) == list(t.state_dict())
    assert k.weight.shape == (3, 4, 5)
    _copy(k, t)
    rng = np.random.default_rng(2)
    x1 = rng.standard_normal(batch + (4,)).astype(np.float32)
    x2 = rng.standard_normal(batch + (5,)).astype(np.float32)
    k1, k2 = (kiln.from_numpy(a.copy()).requires_grad_() for a in (x1, x2))
    t1, t2 = (torch.from_numpy(a.copy()).requires_grad_() for a in (x1, x2))
    ko, to = k(k1, k2), t(t1, t2)
    assert_close(ko, to)
    g = rng.standard_normal(tuple(to.shape)).astype(np.float32)
    ko.backward(kiln.from_numpy(g))
    to.backward(torch.from_numpy(g))
    for a, b, what in [(k1.grad, t1.grad, "x1"), (k2.grad, t2.grad, "x2"),
                       (k.weight.grad, t.weight.grad, "weight")]:
        assert_close(a, b, what=what)
    if bias:
        assert_close(k.bias.grad, t.bias.grad)


def test_bilinear_init_repr_errors():
    kiln.manual_seed(1)
    k = nn.Bilinear(16, 3, 50)
    bound = 1 / math.sqrt(16)
    assert np.abs(k.weight.data).max() <= bound and np.abs(k.bias.data).max() <= bound
    assert abs(k.weight.data.std() / (bound / math.sqrt(3)) - 1) < 0.05
    assert repr(nn.Bilinear(2, 3, 4, bias=False)) == repr(torch.nn.Bilinear(2, 3, 4, bias=False))
    with pytest.raises(ValueError, match="in1_features must be > 0"):
        nn.Bilinear(0, 3, 4)
    w = kiln.zeros(3, 4, 5)
    with pytest.raises(ValueError, match="input batch dimensions do not match"):
        F.bilinear(kiln.zeros(2, 4), kiln.zeros(3, 5), w)
    with pytest.raises(ValueError, match="input1 size does not match weight size: got 3 but "
                                         "expected 4"):
        F.bilinear(kiln.zeros(2, 3), kiln.zeros(2, 5), w)
    with pytest.raises(ValueError, match="input2 size does not match"):
        F.bilinear(kiln.zeros(2, 4), kiln.zeros(2, 6), w)
    with pytest.raises(ValueError, match="bias size does not match"):
        F.bilinear(kiln.zeros(2, 4), kiln.zeros(2, 5), w, kiln.zeros(5))
    with pytest.raises(ValueError, match="weight must be 3-D"):
        F.bilinear(kiln.zeros(2, 4), kiln.zeros(2, 5), kiln.zeros(4, 5))
    with pytest.raises(TypeError, match="dtype mismatch"):
        F.bilinear(kiln.zeros(2, 4, dtype=kiln.float64), kiln.zeros(2, 5), w)


def test_bilinear_gradcheck_float64():
    rng = np.random.default_rng(3)
    args = [kiln.from_numpy(rng.standard_normal(s)).requires_grad_()
            for s in [(3, 2), (3, 4), (5, 2, 4), (5,)]]
    assert kiln.autograd.gradcheck(F.bilinear, args)


def test_mlp_train_eval_matches_torch():
    """A Linear/ReLU/Bilinear-free MLP: same outputs and grads in train and eval mode."""
    t = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    k = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    _copy(k, t)
    x = np.random.default_rng(4).standard_normal((5, 6)).astype(np.float32)
    for mode in ("train", "eval"):
        getattr(k, mode)()
        getattr(t, mode)()
        k.zero_grad()
        t.zero_grad()
        ko, to = k(kiln.from_numpy(x)), t(torch.from_numpy(x))
        assert_close(ko, to)
        ko.sum().backward()
        to.sum().backward()
        for (kn, kp), (tn, tp) in zip(k.named_parameters(), t.named_parameters()):
            assert kn == tn
            assert_close(kp.grad, tp.grad, what=kn)
