"""Adam and AdamW (PyTorch's torch.optim.Adam / AdamW, amsgrad and maximize included),
updated by the compiled multi-tensor kernel ``adam_step``. Per parameter, with t its step:

    p = p * (1 - lr * weight_decay)                       (AdamW: decoupled weight decay)
    g = ±grad + weight_decay * p                          (Adam: L2 penalty)
    m = lerp(m, g, 1 - beta1);  v = beta2 * v + (1 - beta2) * g * g
    v_max = max(v_max, v)                                 (amsgrad; then v_max replaces v)
    p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

State per parameter: ``step`` (0-d float32 tensor), ``exp_avg``, ``exp_avg_sq`` and, with
amsgrad, ``max_exp_avg_sq``: PyTorch's names, so state_dicts move across.

Example:
    >>> import kiln
    >>> w = kiln.tensor([1.0, -2.0], requires_grad=True)
    >>> opt = kiln.optim.Adam([w], lr=0.1)
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

__all__ = ["Adam", "AdamW"]


class Adam(Optimizer):
    """Adam, as ``torch.optim.Adam`` (``decoupled_weight_decay=True`` is AdamW)."""

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0, amsgrad: bool = False, *,
                 foreach: bool | None = None, maximize: bool = False, capturable: bool = False,
                 differentiable: bool = False, fused: bool | None = None,
                 decoupled_weight_decay: bool = False) -> None:
        _check_lr(lr)
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if not 0.0 <= _scalar(betas[0]) < 1.0:
            raise ValueError(f"Invalid beta parameter at index 0: {betas[0]}")
        if not 0.0 <= _scalar(betas[1]) < 1.0:
            raise ValueError(f"Invalid beta parameter at index 1: {betas[1]}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        _check_flags(type(self).__name__, differentiable)
        defaults = {
            "lr": lr, "betas": (_scalar(betas[0]), _scalar(betas[1])), "eps": eps,
            "weight_decay": weight_decay, "amsgrad": amsgrad, "maximize": maximize,
            "foreach": foreach, "capturable": capturable, "differentiable": differentiable,
            "fused": fused, "decoupled_weight_decay": decoupled_weight_decay,
        }  # fmt: skip
        super().__init__(params, defaults)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("amsgrad", False)
            group.setdefault("maximize", False)
            group.setdefault("decoupled_weight_decay", False)

    def _step_group(self, group: dict[str, Any]) -> None:
        params, arrays, grads = _params_with_grad(group["params"])
        if not params:
            return
        amsgrad = bool(group["amsgrad"])
        exp_avgs, exp_avg_sqs, max_sqs, steps = [], [], [], []
        state = self.state
        for p in params:
            st = state[p]
            if len(st) == 0:
                st["step"] = _wrap(np.zeros((), np.float32))
                st["exp_avg"] = _wrap(np.zeros_like(p.data))
                st["exp_avg_sq"] = _wrap(np.zeros_like(p.data))
                if amsgrad:
                    st["max_exp_avg_sq"] = _wrap(np.zeros_like(p.data))
            steps.append(st["step"].data)
            exp_avgs.append(st["exp_avg"].data)
            exp_avg_sqs.append(st["exp_avg_sq"].data)
            if amsgrad:
                max_sqs.append(st["max_exp_avg_sq"].data)
        beta1, beta2 = group["betas"]
        _cpu.adam_step(arrays, grads, exp_avgs, exp_avg_sqs, max_sqs, steps, _scalar(group["lr"]),
                       _scalar(beta1), _scalar(beta2), _scalar(group["eps"]),
                       _scalar(group["weight_decay"]), bool(group["decoupled_weight_decay"]),
                       amsgrad, bool(group["maximize"]))
        _bump_versions(params)


class AdamW(Adam):
    """AdamW: Adam with decoupled weight decay (default 1e-2), as ``torch.optim.AdamW``."""

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False, *,
                 maximize: bool = False, foreach: bool | None = None, capturable: bool = False,
                 differentiable: bool = False, fused: bool | None = None) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, foreach=foreach,
                         maximize=maximize, capturable=capturable, differentiable=differentiable,
                         fused=fused, decoupled_weight_decay=True)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group["decoupled_weight_decay"] = True
