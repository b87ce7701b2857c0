"""RMSprop (PyTorch's torch.optim.RMSprop: alpha, eps, weight_decay, momentum, centered,
maximize), updated by the compiled multi-tensor kernel ``rmsprop_step``:

    g = ±grad + weight_decay * p;   sq = alpha * sq + (1 - alpha) * g * g
    avg = sqrt(sq - ga * ga) + eps with ga = lerp(ga, g, 1 - alpha)  (centered)
    avg = sqrt(sq) + eps                                              (otherwise)
    buf = momentum * buf + g / avg;  p = p - lr * buf                 (momentum > 0)
    p = p - lr * g / avg                                              (otherwise)

State per parameter: ``step``, ``square_avg``, ``momentum_buffer`` (momentum > 0),
``grad_avg`` (centered).

Example:
    >>> import kiln
    >>> w = kiln.tensor([1.0, -2.0], requires_grad=True)
    >>> opt = kiln.optim.RMSprop([w], lr=0.01)
    >>> (w * w).sum().backward()
    >>> opt.step()
    >>> w.detach().numpy().astype(float).round(3).tolist()
    [0.9, -1.9]
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

__all__ = ["RMSprop"]


class RMSprop(Optimizer):
    """RMSprop, as ``torch.optim.RMSprop``."""

    def __init__(self, params, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0, momentum: float = 0, centered: bool = False,
                 capturable: bool = False, foreach: bool | None = None, maximize: bool = False,
                 differentiable: bool = False) -> None:
        _check_lr(lr)
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if not 0.0 <= momentum:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if not 0.0 <= alpha:
            raise ValueError(f"Invalid alpha value: {alpha}")
        _check_flags("RMSprop", differentiable)
        defaults = {
            "lr": lr, "momentum": momentum, "alpha": alpha, "eps": eps, "centered": centered,
            "weight_decay": weight_decay, "capturable": capturable, "foreach": foreach,
            "maximize": maximize, "differentiable": differentiable,
        }  # fmt: skip
        super().__init__(params, defaults)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("momentum", 0)
            group.setdefault("centered", False)
            group.setdefault("maximize", False)

    def _step_group(self, group: dict[str, Any]) -> None:
        params, arrays, grads = _params_with_grad(group["params"])
        if not params:
            return
        momentum = _scalar(group["momentum"])
        centered = bool(group["centered"])
        square_avgs, grad_avgs, bufs, steps = [], [], [], []
        state = self.state
        for p in params:
            st = state[p]
            if len(st) == 0:
                st["step"] = _wrap(np.zeros((), np.float32))
                st["square_avg"] = _wrap(np.zeros_like(p.data))
                if momentum > 0:
                    st["momentum_buffer"] = _wrap(np.zeros_like(p.data))
                if centered:
                    st["grad_avg"] = _wrap(np.zeros_like(p.data))
            steps.append(st["step"].data)
            square_avgs.append(st["square_avg"].data)
            if momentum > 0:
                bufs.append(st["momentum_buffer"].data)
            if centered:
                grad_avgs.append(st["grad_avg"].data)
        _cpu.rmsprop_step(arrays, grads, square_avgs, grad_avgs, bufs, steps,
                          _scalar(group["lr"]), _scalar(group["alpha"]), _scalar(group["eps"]),
                          _scalar(group["weight_decay"]), momentum, centered,
                          bool(group["maximize"]))
        _bump_versions(params)
