"""SGD with momentum, dampening, Nesterov momentum, weight decay and maximize (PyTorch's
torch.optim.SGD), updated by the compiled multi-tensor kernel ``sgd_step``:

    g = ±grad + weight_decay * p
    buf = g (first step), else momentum * buf + (1 - dampening) * g
    g = g + momentum * buf (nesterov), else buf
    p = p - lr * g

Example:
    >>> import kiln
    >>> w = kiln.tensor([1.0, -2.0], requires_grad=True)
    >>> opt = kiln.optim.SGD([w], lr=0.1, momentum=0.9)
    >>> (w * w).sum().backward()
    >>> opt.step()
    >>> w.detach().numpy().astype(float).round(4).tolist()
    [0.8, -1.6]
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kiln import _cpu
from kiln.optim.optimizer import (
    Optimizer,
    _bump_versions,
    _check_flags,
    _check_lr,
    _params_with_grad,
    _scalar,
)
from kiln.tensor import _wrap

__all__ = ["SGD"]


class SGD(Optimizer):
    """Stochastic gradient descent (optionally with momentum), as ``torch.optim.SGD``."""

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0, dampening: float = 0,
                 weight_decay: float = 0, nesterov: bool = False, *, maximize: bool = False,
                 foreach: bool | None = None, differentiable: bool = False,
                 fused: bool | None = None) -> None:
        _check_lr(lr)
        if momentum < 0.0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        _check_flags("SGD", differentiable)
        defaults = {
            "lr": lr, "momentum": momentum, "dampening": dampening,
            "weight_decay": weight_decay, "nesterov": nesterov, "maximize": maximize,
            "foreach": foreach, "differentiable": differentiable, "fused": fused,
        }  # fmt: skip
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        super().__init__(params, defaults)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("nesterov", False)
            group.setdefault("maximize", False)

    def _step_group(self, group: dict[str, Any]) -> None:
        momentum = _scalar(group["momentum"])
        args = (_scalar(group["lr"]), momentum, _scalar(group["dampening"]),
                _scalar(group["weight_decay"]), bool(group["nesterov"]), bool(group["maximize"]))
        if momentum == 0:
            params, arrays, grads = _params_with_grad(group["params"])
            if params:
                _cpu.sgd_step(arrays, grads, [], *args, False)
                _bump_versions(params)
            return
        # One pass over the group (this is per-step Python time): the parameters with a
        # gradient, split into those with a momentum buffer and those whose buffer starts
        # as the gradient.
        state = self.state
        params, old, new = [], ([], [], []), None
        for p in group["params"]:
            g = p.grad
            if g is None:
                continue
            g = g.data
            if not g.flags.c_contiguous:
                g = np.ascontiguousarray(g)
            st = state[p]
            buf = st.get("momentum_buffer")
            if buf is None:
                buf = st["momentum_buffer"] = _wrap(np.empty_like(p.data))
                new = new or ([], [], [])
                lists = new
            else:
                lists = old
            lists[0].append(p.data)
            lists[1].append(g)
            lists[2].append(buf.data)
            params.append(p)
        if old[0]:
            _cpu.sgd_step(*old, *args, False)
        if new:
            _cpu.sgd_step(*new, *args, True)
        _bump_versions(params)
