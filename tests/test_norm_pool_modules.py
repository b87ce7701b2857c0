"""Normalization, pooling and dropout layers against torch.nn with copied weights: outputs,
gradients of input and parameters, running statistics over several training steps (momentum
and the cumulative average), eval mode, state_dict keys / dtypes moving both ways, reprs."""

import numpy as np
import pytest
import torch

import kiln
from kiln import nn

from helpers import assert_close


def _copy(kmod, tmod):
    kmod.load_state_dict({k: v.detach().numpy().copy() for k, v in tmod.state_dict().items()})


def _step(kmod, tmod, x, rtol=1e-5, seed=0):
    kx = kiln.tensor(x, requires_grad=True)
    tx = torch.tensor(x, requires_grad=True)
    ky, ty = kmod(kx), tmod(tx)
    assert_close(ky, ty, rtol=rtol, what="output")
    g = np.random.default_rng(1000 + seed).standard_normal(tuple(ty.shape)).astype(x.dtype)
    ky.backward(kiln.tensor(g))
    ty.backward(torch.tensor(g))
    assert_close(kx.grad, tx.grad, rtol=rtol, what="grad input")
    tp = dict(tmod.named_parameters())
    for name, p in kmod.named_parameters():
        assert_close(p.grad, tp[name].grad, rtol=rtol, what=f"grad {name}")
        p.grad = None
        tp[name].grad = None


@pytest.mark.parametrize("cls,shape", [("BatchNorm1d", (8, 5)), ("BatchNorm1d", (6, 5, 7)),
                                       ("BatchNorm2d", (4, 5, 6, 3)),
                                       ("BatchNorm3d", (2, 5, 3, 2, 4))])
@pytest.mark.parametrize("momentum", [0.1, None, 0.5])
@pytest.mark.parametrize("affine,track,bias", [(True, True, True), (False, True, True),
                                               (True, False, True), (True, True, False)])
def test_batch_norm_modules(cls, shape, momentum, affine, track, bias):
    rng = np.random.default_rng(0)
    kw = dict(momentum=momentum, affine=affine, track_running_stats=track, bias=bias)
    tmod = getattr(torch.nn, cls)(5, **kw)
    kmod = getattr(nn, cls)(5, **kw)
    if affine:
        with torch.no_grad():
            for p in tmod.parameters():
                p.uniform_(0.5, 1.5)
    _copy(kmod, tmod)
    assert repr(kmod) == repr(tmod)
    for step in range(4):
        x = (rng.standard_normal(shape) * (1 + step) + step).astype(np.float32)
        _step(kmod, tmod, x, seed=step)
    tsd, ksd = tmod.state_dict(), kmod.state_dict()
    assert list(ksd) == list(tsd)
    for k in tsd:
        assert_close(ksd[k].numpy().astype(np.float64), tsd[k].numpy().astype(np.float64),
                     rtol=1e-5, what=k)
    if track:
        assert ksd["num_batches_tracked"].dtype == kiln.int64
        assert int(ksd["num_batches_tracked"].item()) == 4
    kmod.eval()
    tmod.eval()
    x = rng.standard_normal(shape).astype(np.float32)
    _step(kmod, tmod, x, seed=9)


def test_batch_norm_state_dict_into_torch_and_errors():
    kmod = nn.BatchNorm2d(3)
    for _ in range(2):
        kmod(kiln.randn(4, 3, 2, 2))
    tmod = torch.nn.BatchNorm2d(3)
    tmod.load_state_dict({k: torch.from_numpy(v.numpy().copy())
                          for k, v in kmod.state_dict().items()})
    assert int(tmod.num_batches_tracked) == 2
    np.testing.assert_array_equal(tmod.running_var.numpy(), kmod.running_var.numpy())
    with pytest.raises(ValueError, match="expected 4D input"):
        kmod(kiln.randn(4, 3))
    with pytest.raises(ValueError, match=r"shape \(5,\).*\(3,\)"):  # wrong channel count
        kmod(kiln.randn(4, 5, 2, 2))
    with pytest.raises(ValueError, match="expected 2D or 3D"):
        nn.BatchNorm1d(3)(kiln.randn(2, 3, 4, 5))


@pytest.mark.parametrize("ns,shape", [(8, (3, 8)), ((4, 5), (2, 3, 4, 5)), (7, (2, 6, 7))])
@pytest.mark.parametrize("affine,bias", [(True, True), (True, False), (False, True)])
def test_layer_norm_module(ns, shape, affine, bias):
    tmod = torch.nn.LayerNorm(ns, elementwise_affine=affine, bias=bias)
    kmod = nn.LayerNorm(ns, elementwise_affine=affine, bias=bias)
    if affine:
        with torch.no_grad():
            for p in tmod.parameters():
                p.uniform_(-1, 1)
    _copy(kmod, tmod)
    assert repr(kmod) == repr(tmod)
    assert list(kmod.state_dict()) == list(tmod.state_dict())
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    _step(kmod, tmod, x)


@pytest.mark.parametrize("groups,channels,affine,bias", [(2, 6, True, True), (1, 4, False, True),
                                                        (4, 4, True, False)])
def test_group_norm_module(groups, channels, affine, bias):
    tmod = torch.nn.GroupNorm(groups, channels, affine=affine, bias=bias)
    kmod = nn.GroupNorm(groups, channels, affine=affine, bias=bias)
    if affine:
        with torch.no_grad():
            for p in tmod.parameters():
                p.uniform_(-1, 1)
    _copy(kmod, tmod)
    assert repr(kmod) == repr(tmod)
    x = np.random.default_rng(2).standard_normal((3, channels, 5, 4)).astype(np.float32)
    _step(kmod, tmod, x)
    with pytest.raises(ValueError, match="divisible"):
        nn.GroupNorm(4, 6)


@pytest.mark.parametrize("name,args,kw,shape", [
    ("MaxPool2d", (3,), dict(stride=2, padding=1), (2, 3, 9, 8)),
    ("MaxPool2d", (2,), dict(ceil_mode=True, dilation=1), (3, 7, 7)),
    ("MaxPool1d", (3,), dict(stride=1, padding=1, dilation=2), (2, 3, 10)),
    ("AvgPool2d", (3,), dict(stride=2, padding=1, count_include_pad=False), (2, 3, 9, 8)),
    ("AvgPool2d", ((2, 3),), dict(ceil_mode=True, divisor_override=4), (1, 2, 7, 9)),
    ("AvgPool1d", (2,), dict(ceil_mode=True), (2, 3, 9)),
    ("AdaptiveAvgPool2d", ((3, None),), {}, (2, 3, 7, 5)),
    ("AdaptiveAvgPool2d", (1,), {}, (2, 8, 7, 7)),
    ("AdaptiveAvgPool1d", (4,), {}, (2, 3, 9)),
])
def test_pool_modules(name, args, kw, shape):
    kmod, tmod = getattr(nn, name)(*args, **kw), getattr(torch.nn, name)(*args, **kw)
    assert repr(kmod) == repr(tmod)
    x = np.random.default_rng(3).standard_normal(shape).astype(np.float32)
    _step(kmod, tmod, x)


def test_max_pool_module_return_indices():
    kmod = nn.MaxPool2d(2, return_indices=True)
    tmod = torch.nn.MaxPool2d(2, return_indices=True)
    x = np.random.default_rng(4).standard_normal((1, 2, 6, 5)).astype(np.float32)
    (ky, ki), (ty, ti) = kmod(kiln.tensor(x)), tmod(torch.tensor(x))
    assert_close(ky, ty)
    np.testing.assert_array_equal(ki.numpy(), ti.numpy())


@pytest.mark.parametrize("name,shape", [("Dropout", (64, 50)), ("Dropout1d", (4, 16, 9)),
                                        ("Dropout2d", (4, 16, 3, 3)),
                                        ("Dropout3d", (2, 16, 2, 2, 2))])
def test_dropout_modules(name, shape):
    kmod, tmod = getattr(nn, name)(0.3), getattr(torch.nn, name)(0.3)
    assert repr(kmod) == repr(tmod)
    x = kiln.ones(*shape)
    y = kmod(x).numpy()
    assert set(np.unique(y).tolist()) == {0.0, np.float32(1 / 0.7)}
    kmod.eval()
    assert kmod(x) is x
    with pytest.raises(ValueError, match="between 0 and 1"):
        getattr(nn, name)(1.5)
