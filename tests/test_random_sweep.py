"""Seeded random sweeps against PyTorch: broadcasting binary ops over random shapes, and
reductions over random dims -- values and gradients, float32 at 1e-5 relative."""

import numpy as np
import pytest
import torch

import kiln

from helpers import assert_close

BINARY = [("add", lambda a, b: a + b), ("sub", lambda a, b: a - b), ("mul", lambda a, b: a * b),
          ("div", lambda a, b: a / b), ("maximum", lambda a, b: a.maximum(b)),
          ("where", lambda a, b: a.where(a > b, b))]


def _broadcast_pair(rng):
    nd = int(rng.integers(0, 5))
    shape = [int(rng.integers(1, 5)) for _ in range(nd)]
    a = [s if rng.random() < 0.7 else 1 for s in shape]
    b = [s if rng.random() < 0.7 else 1 for s in shape]
    b = b[int(rng.integers(0, nd + 1)):]  # b may have fewer dims
    return tuple(a), tuple(b)


@pytest.mark.parametrize("seed", range(40))
def test_broadcast_binary_sweep(seed):
    rng = np.random.default_rng(seed)
    sa, sb = _broadcast_pair(rng)
    name, f = BINARY[seed % len(BINARY)]
    a = np.asarray(rng.standard_normal(sa), dtype=np.float32)
    b = np.asarray(np.abs(rng.standard_normal(sb)) + 0.5, dtype=np.float32)
    ka, kb = kiln.from_numpy(a).requires_grad_(), kiln.from_numpy(b).requires_grad_()
    ta, tb = torch.from_numpy(a.copy()).requires_grad_(), torch.from_numpy(b.copy()).requires_grad_()
    ko, to = f(ka, kb), f(ta, tb)
    assert_close(ko, to, what=f"{name} {sa} {sb}")
    g = np.asarray(rng.standard_normal(tuple(to.shape)), dtype=np.float32)
    ko.backward(kiln.from_numpy(g))
    to.backward(torch.from_numpy(g))
    assert_close(ka.grad, ta.grad, what=f"{name} grad a {sa} {sb}")
    assert_close(kb.grad, tb.grad, what=f"{name} grad b {sa} {sb}")


REDUCTIONS = ["sum", "mean", "amax", "logsumexp", "var", "std", "prod"]


@pytest.mark.parametrize("seed", range(40))
def test_reduction_sweep(seed):
    rng = np.random.default_rng(1000 + seed)
    nd = int(rng.integers(1, 5))
    shape = tuple(int(rng.integers(2, 5)) for _ in range(nd))
    ndims = int(rng.integers(1, nd + 1))
    dims = tuple(sorted(rng.choice(nd, size=ndims, replace=False).tolist()))
    keep = bool(rng.random() < 0.5)
    name = REDUCTIONS[seed % len(REDUCTIONS)]
    if name == "prod":
        dims = dims[:1]
    x = (rng.standard_normal(shape) * (0.5 if name == "prod" else 1)).astype(np.float32)
    kx, tx = kiln.from_numpy(x).requires_grad_(), torch.from_numpy(x.copy()).requires_grad_()
    arg = dims[0] if name == "prod" else dims
    ko = getattr(kx, name)(arg, keepdim=keep)
    to = getattr(tx, name)(arg, keepdim=keep)
    assert_close(ko, to, what=f"{name} {shape} dims={dims} keepdim={keep}")
    g = np.asarray(rng.standard_normal(tuple(to.shape)), dtype=np.float32)
    ko.backward(kiln.from_numpy(g))
    to.backward(torch.from_numpy(g))
    assert_close(kx.grad, tx.grad, what=f"{name} grad {shape} dims={dims} keepdim={keep}")
