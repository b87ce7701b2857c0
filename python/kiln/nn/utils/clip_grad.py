"""Gradient clipping with PyTorch's semantics (torch.nn.utils.clip_grad):

    total_norm = || (||g_1||, ..., ||g_n||) ||_p   (= the p-norm of all gradients concatenated)
    g *= min(max_norm / (total_norm + 1e-6), 1)    (clip_grad_norm_)
    g = clamp(g, -clip_value, clip_value)          (clip_grad_value_)

The norm is one call of the compiled ``grad_norm`` kernel over every gradient (float64
accumulation; p = inf, -inf, 0 and any p > 0), the scaling one ``grad_scale`` call and the
clamp one ``grad_clamp`` call, per dtype. Gradients are modified in place.

Example:
    >>> import kiln
    >>> from kiln.nn.utils import clip_grad_norm_
    >>> w = kiln.zeros(2, requires_grad=True)
    >>> w.grad = kiln.tensor([3.0, 4.0])
    >>> clip_grad_norm_([w], max_norm=1.0).item()
    5.0
    >>> w.grad.numpy().astype(float).round(4).tolist()
    [0.6, 0.8]
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from kiln import _cpu
from kiln.tensor import Tensor, _wrap

__all__ = ["clip_grad_norm", "clip_grad_norm_", "clip_grad_value_", "clip_grads_with_norm_",
           "get_total_norm"]


def _as_list(tensors) -> list[Tensor]:
    return [tensors] if isinstance(tensors, Tensor) else list(tensors)


def _grads(parameters) -> list[Tensor]:
    return [p.grad for p in _as_list(parameters) if p.grad is not None]


def _by_dtype(tensors: list[Tensor]) -> dict[np.dtype, list[Tensor]]:
    out: dict[np.dtype, list[Tensor]] = {}
    for t in tensors:
        if not t.data.flags.c_contiguous or not t.data.flags.writeable:
            raise ValueError(
                f"gradient clipping: a gradient of shape {tuple(t.shape)} is not a contiguous, "
                "writeable tensor")
        out.setdefault(t.data.dtype, []).append(t)
    return out


def get_total_norm(tensors: Tensor | Iterable[Tensor], norm_type: float = 2.0,
                   error_if_nonfinite: bool = False, foreach: bool | None = None) -> Tensor:
    """The norm_type-norm of the tensors' norms (a 0-d tensor of their dtype).

    Example:
        >>> import kiln
        >>> from kiln.nn.utils import get_total_norm
        >>> get_total_norm([kiln.tensor([3.0]), kiln.tensor([4.0])]).item()
        5.0
    """
    tensors = _as_list(tensors)
    norm_type = float(norm_type)
    if len(tensors) == 0:
        return _wrap(np.zeros((), np.float32))
    arrays = [t.data if t.data.flags.c_contiguous else np.ascontiguousarray(t.data)
              for t in tensors]
    out = np.zeros(1, np.float64)
    if norm_type == 0:
        # PyTorch takes the norm of the per-tensor norms; for p = 0 (the count of nonzeros)
        # that is the number of tensors with a nonzero element, not the total count
        total = 0.0
        for a in arrays:
            _cpu.grad_norm([a], out, 0.0)
            total += float(out[0] != 0)
    else:
        _cpu.grad_norm(arrays, out, norm_type)
        total = float(out[0])
    dtype = np.result_type(*[a.dtype for a in arrays])
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(
            f"The total norm of order {norm_type} for gradients from `parameters` is "
            "non-finite, so it cannot be clipped. To disable this error and scale the "
            "gradients by the non-finite norm anyway, set `error_if_nonfinite=False`")
    return _wrap(np.array(total, dtype=dtype))


def clip_grads_with_norm_(parameters: Tensor | Iterable[Tensor], max_norm: float,
                          total_norm: Tensor, foreach: bool | None = None) -> None:
    """Scale the gradients by min(max_norm / (total_norm + 1e-6), 1), in place."""
    grads = _grads(parameters)
    if not grads:
        return
    tn = total_norm.data if isinstance(total_norm, Tensor) else np.asarray(total_norm)
    # PyTorch computes the coefficient as a tensor op in total_norm's dtype
    coef = np.asarray(float(max_norm), tn.dtype) / (tn + np.asarray(1e-6, tn.dtype))
    coef = min(float(coef), 1.0) if not np.isnan(coef) else float("nan")
    for group in _by_dtype(grads).values():
        _cpu.grad_scale([g.data for g in group], coef)
        for g in group:
            g._version += 1


def clip_grad_norm_(parameters: Tensor | Iterable[Tensor], max_norm: float,
                    norm_type: float = 2.0, error_if_nonfinite: bool = False,
                    foreach: bool | None = None) -> Tensor:
    """Clip the gradients' total norm to ``max_norm`` in place; returns the total norm
    (before clipping) as a 0-d tensor. ``norm_type`` may be ``inf``."""
    parameters = _as_list(parameters)
    grads = _grads(parameters)
    total = get_total_norm(grads, norm_type, error_if_nonfinite, foreach)
    clip_grads_with_norm_(parameters, max_norm, total, foreach)
    return total


def clip_grad_norm(parameters, max_norm: float, norm_type: float = 2.0,
                   error_if_nonfinite: bool = False, foreach: bool | None = None) -> Tensor:
    """Deprecated alias of :func:`clip_grad_norm_` (as in PyTorch)."""
    return clip_grad_norm_(parameters, max_norm, norm_type, error_if_nonfinite, foreach)


def clip_grad_value_(parameters: Tensor | Iterable[Tensor], clip_value: float,
                     foreach: bool | None = None) -> None:
    """Clamp every gradient to [-clip_value, clip_value] in place.

    Example:
        >>> import kiln
        >>> from kiln.nn.utils import clip_grad_value_
        >>> w = kiln.zeros(3, requires_grad=True)
        >>> w.grad = kiln.tensor([-2.0, 0.5, 3.0])
        >>> clip_grad_value_([w], 1.0)
        >>> w.grad.numpy().tolist()
        [-1.0, 0.5, 1.0]
    """
    clip_value = float(clip_value)
    for group in _by_dtype(_grads(parameters)).values():
        _cpu.grad_clamp([g.data for g in group], -clip_value, clip_value)
        for g in group:
            g._version += 1
