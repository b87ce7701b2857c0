"""Activation modules against torch.nn: outputs and input gradients, repr identical to
torch's for each configuration, ``inplace`` accepted, Hardtanh's gradient at its
bounds, the deprecated implicit softmax dim, and F.hardtanh / F.mish / F.softmin with
float64 gradchecks."""

import warnings

import numpy as np
import pytest
import torch

import kiln
import kiln.nn.functional as F
from kiln import nn

from helpers import assert_close

CONFIGS = [
    ("ReLU", (), {}), ("ReLU", (), {"inplace": True}),
    ("LeakyReLU", (), {}), ("LeakyReLU", (0.2, True), {}),
    ("Sigmoid", (), {}), ("Tanh", (), {}),
    ("GELU", (), {}), ("GELU", (), {"approximate": "tanh"}),
    ("SiLU", (), {}), ("SiLU", (True,), {}),
    ("Softplus", (), {}), ("Softplus", (2, 10), {}), ("Softplus", (), {"beta": 0.5}),
    ("ELU", (), {}), ("ELU", (0.5, True), {}),
    ("Softmax", (1,), {}), ("Softmax", (), {"dim": -1}),
    ("LogSoftmax", (0,), {}), ("Softmin", (1,), {}),
    ("Hardtanh", (), {}), ("Hardtanh", (-0.5, 2.0), {}), ("Hardtanh", (-2, 2, True), {}),
    ("Mish", (), {}), ("Mish", (True,), {}),
]


@pytest.mark.parametrize("name,args,kw", CONFIGS)
def test_module_matches_torch(name, args, kw):
    k, t = getattr(nn, name)(*args, **kw), getattr(torch.nn, name)(*args, **kw)
    assert repr(k) == repr(t)
    x = (np.random.default_rng(0).standard_normal((4, 6)) * 3).astype(np.float32)
    x[0, :3] = [0.0, 1.0, -1.0]
    kx = kiln.from_numpy(x.copy()).requires_grad_()
    tx = torch.from_numpy(x.copy()).requires_grad_()
    ko = k(kx)
    to = t(tx * 1.0 if kw.get("inplace") or (args and args[-1] is True) else tx)
    assert_close(ko, to)
    g = np.random.default_rng(1).standard_normal(x.shape).astype(np.float32)
    ko.backward(kiln.from_numpy(g))
    to.backward(torch.from_numpy(g))
    assert_close(kx.grad, tx.grad)
    assert np.array_equal(kx.data, x)  # kiln computes out of place even with inplace=True


def test_sequential_repr_matches_torch():
    def build(m):
        return m.Sequential(m.Linear(3, 4), m.ReLU(), m.LeakyReLU(0.1, inplace=True),
                            m.GELU("tanh"), m.Softplus(2.0, 10.5), m.ELU(), m.Softmax(dim=1),
                            m.LogSoftmax(), m.Hardtanh(-2.0, 2.0), m.Bilinear(2, 3, 4),
                            m.Sigmoid(), m.Tanh(), m.Mish(), m.Softmin(0))
    assert repr(build(nn)) == repr(build(torch.nn))


def test_hardtanh_gradient_is_zero_at_bounds():
    x = np.array([-1.0, 1.0, -2.0, 0.5, 2.0], np.float32)
    kx = kiln.from_numpy(x.copy()).requires_grad_()
    tx = torch.from_numpy(x.copy()).requires_grad_()
    F.hardtanh(kx).sum().backward()
    torch.nn.functional.hardtanh(tx).sum().backward()
    assert_close(kx.grad, tx.grad)
    assert list(kx.grad.data) == [0, 0, 0, 1, 0]


def test_hardtanh_args():
    with pytest.raises(ValueError, match=r"max_val \(1.0\) must be greater than min_val"):
        nn.Hardtanh(1.0, 1.0)
    with pytest.warns(FutureWarning, match="min_value"):
        h = nn.Hardtanh(min_value=-3.0)
    assert h.min_val == -3.0


def test_softmax_implicit_dim_warns():
    x = kiln.randn(2, 3)
    with pytest.warns(UserWarning, match="Implicit dimension choice for softmax"):
        y = nn.Softmax()(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ty = torch.nn.Softmax()(torch.from_numpy(x.data.copy()))
    assert_close(y, ty)


@pytest.mark.parametrize("fn", [lambda a: F.hardtanh(a, -0.7, 0.9), F.mish,
                                lambda a: F.softmin(a, 1), lambda a: nn.Softmin(0)(a)])
def test_gradcheck(fn):
    a = kiln.from_numpy(np.random.default_rng(2).standard_normal((3, 4))).requires_grad_()
    assert kiln.autograd.gradcheck(fn, [a])


def test_mish_is_stable_for_large_inputs():
    x = np.array([-100.0, -30.0, 30.0, 100.0], np.float32)
    kx = kiln.from_numpy(x.copy()).requires_grad_()
    tx = torch.from_numpy(x.copy()).requires_grad_()
    F.mish(kx).sum().backward()
    torch.nn.functional.mish(tx).sum().backward()
    assert_close(F.mish(kiln.from_numpy(x)), torch.nn.functional.mish(torch.from_numpy(x)))
    assert_close(kx.grad, tx.grad)


def test_bad_input():
    with pytest.raises(TypeError, match="relu: expected a Tensor"):
        nn.ReLU()([1.0, 2.0])
    with pytest.raises(TypeError, match="hardtanh: input must be a floating point"):
        nn.Hardtanh()(kiln.tensor([1, 2]))
    with pytest.raises(ValueError, match="gelu: approximate must be"):
        nn.GELU("fast")(kiln.ones(2))
