"""Deterministic inputs and models shared by the MPI worker scripts and the pytest side
(which recomputes the expected results in one process)."""

import zlib

import numpy as np

import kiln
from kiln import nn

IN, HID, OUT, BATCH, STEPS = 6, 16, 3, 8, 10


def rank_input(name: str, rank: int, shape, dtype) -> np.ndarray:
    """The array rank ``rank`` contributes to the collective check ``name``."""
    rng = np.random.default_rng([zlib.crc32(name.encode()), rank])
    if np.dtype(dtype).kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    return rng.integers(-50, 50, shape).astype(dtype)


def data(steps: int = STEPS):
    rng = np.random.default_rng(1234)
    return rng.standard_normal((steps, BATCH, IN)), rng.standard_normal((steps, BATCH, OUT))


def mlp(seed: int, norm: bool = False) -> nn.Module:
    """Linear-Tanh-Linear-ReLU-Linear in float64 (with a BatchNorm1d when ``norm``)."""
    kiln.manual_seed(seed)
    mid = [nn.BatchNorm1d(HID)] if norm else []
    return nn.Sequential(nn.Linear(IN, HID), nn.Tanh(), nn.Linear(HID, HID), *mid, nn.ReLU(),
                         nn.Linear(HID, OUT)).double()


class WithAux(nn.Module):
    """An MLP plus an ``aux`` Linear that forward uses only when asked."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.body = mlp(seed)
        self.aux = nn.Linear(IN, OUT).double()

    def forward(self, x, use_aux: bool = False):
        y = self.body(x)
        return y + self.aux(x) if use_aux else y


class Reordered(nn.Module):
    """An MLP whose layers are registered in the reverse of the order forward uses them:
    backward produces the gradients in registration order, not in its reverse."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        kiln.manual_seed(seed)
        self.out = nn.Linear(HID, OUT).double()
        self.mid = nn.Linear(HID, HID).double()
        self.inp = nn.Linear(IN, HID).double()

    def forward(self, x):
        return self.out(nn.functional.relu(self.mid(kiln.tanh(self.inp(x)))))


def sgd(model: nn.Module) -> kiln.optim.Optimizer:
    return kiln.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)


def step(model, opt, x, y, **kw) -> None:
    opt.zero_grad()
    loss = nn.functional.mse_loss(model(kiln.tensor(x), **kw), kiln.tensor(y))
    loss.backward()
    opt.step()


def params(model: nn.Module) -> dict:
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
