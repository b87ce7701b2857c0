"""Conv1d / Conv2d / ConvTranspose1d / ConvTranspose2d layers against torch.nn with the
same weights (copied through state_dict): outputs and parameter / input gradients to
1e-5 relative; constructor checks, repr, state_dict keys and the default initialisation."""

import math

import numpy as np
import pytest

import kiln
from kiln import nn

from helpers import assert_close, torch

LAYERS = [
    ("Conv2d", (3, 8, 3), dict(padding=1), (4, 3, 12, 12)),
    ("Conv2d", (4, 6, (2, 5)), dict(stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2),
     (2, 4, 11, 13)),
    ("Conv2d", (6, 6, 3), dict(groups=6, bias=False), (3, 6, 9, 9)),
    ("Conv2d", (4, 5, 4), dict(padding="same", dilation=2), (2, 4, 9, 10)),
    ("Conv2d", (4, 5, 3), dict(padding="valid", stride=3), (1, 4, 10, 10)),
    ("Conv2d", (4, 4, 3), dict(padding=2, padding_mode="reflect"), (2, 4, 7, 8)),
    ("Conv2d", (4, 4, 3), dict(padding=(1, 2), padding_mode="replicate"), (2, 4, 7, 8)),
    ("Conv2d", (4, 6, (3, 2)), dict(padding="same", padding_mode="circular", groups=2),
     (2, 4, 7, 8)),
    ("Conv2d", (3, 5, 3), dict(padding=1), (3, 6, 6)),  # unbatched
    ("Conv1d", (4, 6, 3), dict(stride=2, padding=1), (3, 4, 17)),
    ("Conv1d", (4, 4, 5), dict(padding="same", groups=4), (2, 4, 9)),
    ("Conv1d", (2, 3, 3), dict(padding=1, padding_mode="circular"), (2, 2, 8)),
    ("ConvTranspose2d", (4, 6, 3), dict(stride=2, padding=1, output_padding=1), (2, 4, 5, 6)),
    ("ConvTranspose2d", (4, 2, (2, 3)), dict(stride=(1, 2), groups=2, dilation=(2, 1),
                                             bias=False), (2, 4, 5, 5)),
    ("ConvTranspose1d", (4, 3, 4), dict(stride=3, padding=2, output_padding=1), (2, 4, 7)),
]


@pytest.mark.parametrize("case", LAYERS, ids=[f"{c[0]}-{i}" for i, c in enumerate(LAYERS)])
def test_layer_matches_torch(case):
    name, args, kw, xs = case
    torch.manual_seed(0)
    tm = getattr(torch.nn, name)(*args, **kw)
    km = getattr(nn, name)(*args, **kw)
    assert repr(km) == repr(tm)
    assert list(km.state_dict()) == list(tm.state_dict())
    km.load_state_dict({k: kiln.tensor(v.detach().numpy()) for k, v in tm.state_dict().items()})
    x = np.random.default_rng(1).standard_normal(xs).astype(np.float32)
    kx = kiln.tensor(x, requires_grad=True)
    tx = torch.tensor(x, requires_grad=True)
    ky, ty = km(kx), tm(tx)
    assert_close(ky, ty, rtol=1e-5, what="output")
    gy = np.random.default_rng(2).standard_normal(tuple(ty.shape)).astype(np.float32)
    ky.backward(kiln.tensor(gy))
    ty.backward(torch.from_numpy(gy))
    assert_close(kx.grad, tx.grad, rtol=1e-5, what="grad input")
    for (kn, kp), (tn, tp) in zip(km.named_parameters(), tm.named_parameters()):
        assert kn == tn
        assert_close(kp.grad, tp.grad, rtol=1e-5, what=f"grad {kn}")


def test_transpose_output_size():
    torch.manual_seed(0)
    tm = torch.nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1)
    km = nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1)
    km.load_state_dict({k: kiln.tensor(v.detach().numpy()) for k, v in tm.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((1, 3, 5, 5)).astype(np.float32)
    for size in [(9, 9), (10, 10), (1, 2, 10, 9)]:
        ky = km(kiln.tensor(x), output_size=size)
        ty = tm(torch.from_numpy(x), output_size=list(size))
        assert_close(ky.detach(), ty.detach(), rtol=1e-5)
    with pytest.raises(ValueError, match="valid sizes range from 9 to 10"):
        km(kiln.tensor(x), output_size=(12, 12))


@pytest.mark.parametrize("name, args", [
    ("Conv2d", (16, 32, (3, 5))), ("Conv1d", (6, 4, 7)), ("ConvTranspose2d", (8, 6, 3)),
])
def test_default_init(name, args):
    m = getattr(nn, name)(*args)
    w = m.weight.detach().numpy()
    fan_in = w.shape[1] * math.prod(w.shape[2:])
    bound = 1 / math.sqrt(fan_in)  # kaiming_uniform_(a=sqrt(5)) and the bias rule agree
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.8 * bound
    assert abs(w.std() - bound / math.sqrt(3)) < 0.15 * bound
    b = m.bias.detach().numpy()
    assert b.shape == (m.out_channels,) and np.abs(b).max() <= bound
    assert isinstance(m.weight, nn.Parameter) and m.weight.requires_grad


def test_float64_layer_and_dtype_argument():
    m = nn.Conv2d(2, 3, 3, dtype=kiln.float64)
    assert m.weight.dtype == kiln.float64 and m.bias.dtype == kiln.float64
    x = kiln.randn(1, 2, 5, 5, dtype=kiln.float64, requires_grad=True)
    assert kiln.autograd.gradcheck(lambda t: m(t), [x])


def test_bias_false_has_no_bias_key():
    m = nn.Conv2d(2, 3, 3, bias=False)
    assert m.bias is None and list(m.state_dict()) == ["weight"]
    assert repr(m) == "Conv2d(2, 3, kernel_size=(3, 3), stride=(1, 1), bias=False)"


@pytest.mark.parametrize("ctor, pattern", [
    (lambda: nn.Conv2d(4, 6, 3, groups=3), r"in_channels \(4\) must be divisible by groups"),
    (lambda: nn.Conv2d(6, 4, 3, groups=3), r"out_channels \(4\) must be divisible by groups"),
    (lambda: nn.Conv2d(4, 4, 3, groups=0), "groups must be a positive integer"),
    (lambda: nn.Conv2d(4, 4, 3, padding="full"), "invalid padding string"),
    (lambda: nn.Conv2d(4, 4, 3, padding="same", stride=2), "not supported for strided"),
    (lambda: nn.Conv2d(4, 4, 3, padding_mode="mirror"), "padding_mode must be one of"),
    (lambda: nn.ConvTranspose2d(4, 4, 3, padding_mode="reflect"), 'Only "zeros" padding mode'),
    (lambda: nn.Conv2d(4, 4, (3, 3, 3)), "kernel_size must be an int or a tuple of 2"),
])
def test_constructor_errors(ctor, pattern):
    with pytest.raises(ValueError, match=pattern):
        ctor()


def test_layer_in_a_network_trains():
    """A small CNN's loss goes down with plain SGD steps (gradients flow through the stack)."""
    kiln.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Flatten(), )
    x = kiln.randn(8, 1, 6, 6)
    target = kiln.randn(8, 4 * 36)
    losses = []
    for _ in range(5):
        loss = ((net(x) - target) ** 2).mean()
        losses.append(loss.item())
        for p in net.parameters():
            p.grad = None
        loss.backward()
        with kiln.no_grad():
            for p in net.parameters():
                p.data -= 0.5 * p.grad.data
    assert losses[-1] < losses[0]
