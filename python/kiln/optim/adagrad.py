"""Adagrad (PyTorch's torch.optim.Adagrad: lr_decay, weight_decay, initial_accumulator_value,
eps, maximize; dense gradients), updated by the compiled multi-tensor kernel
``adagrad_step``. Per parameter, with t its step:

    g = ±grad + weight_decay * p;   sum = sum + g * g
    p = p - lr / (1 + (t - 1) * lr_decay) * g / (sqrt(sum) + eps)

State per parameter: ``step`` and ``sum`` (initialised to initial_accumulator_value when the
optimizer is built, as PyTorch does).

Example:
    >>> import kiln
    >>> w = kiln.tensor([1.0, -2.0], requires_grad=True)
    >>> opt = kiln.optim.Adagrad([w], lr=0.1)
    >>> (w * w).sum().backward()
    >>> opt.step()
    >>> w.detach().numpy().astype(float).round(4).tolist()
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

__all__ = ["Adagrad"]


class Adagrad(Optimizer):
    """Adagrad, as ``torch.optim.Adagrad`` (dense gradients)."""

    def __init__(self, params, lr: float = 1e-2, lr_decay: float = 0, weight_decay: float = 0,
                 initial_accumulator_value: float = 0, eps: float = 1e-10,
                 foreach: bool | None = None, *, maximize: bool = False,
                 differentiable: bool = False, fused: bool | None = None) -> None:
        _check_lr(lr)
        if not 0.0 <= lr_decay:
            raise ValueError(f"Invalid lr_decay value: {lr_decay}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if not 0.0 <= initial_accumulator_value:
            raise ValueError(
                f"Invalid initial_accumulator_value value: {initial_accumulator_value}")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        _check_flags("Adagrad", differentiable)
        defaults = {
            "lr": lr, "lr_decay": lr_decay, "eps": eps, "weight_decay": weight_decay,
            "initial_accumulator_value": initial_accumulator_value, "foreach": foreach,
            "maximize": maximize, "differentiable": differentiable, "fused": fused,
        }  # fmt: skip
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                self._init_state(p)

    def _init_state(self, p) -> dict[str, Any]:
        st = self.state[p]
        st["step"] = _wrap(np.zeros((), np.float32))
        st["sum"] = _wrap(np.full_like(p.data, self.defaults["initial_accumulator_value"]))
        return st

    def _step_group(self, group: dict[str, Any]) -> None:
        params, arrays, grads = _params_with_grad(group["params"])
        if not params:
            return
        sums, steps = [], []
        state = self.state
        for p in params:
            st = state[p]
            if len(st) == 0:
                st = self._init_state(p)
            steps.append(st["step"].data)
            sums.append(st["sum"].data)
        _cpu.adagrad_step(arrays, grads, sums, steps, _scalar(group["lr"]),
                          _scalar(group["lr_decay"]), _scalar(group["weight_decay"]),
                          _scalar(group["eps"]), bool(group["maximize"]))
        _bump_versions(params)
