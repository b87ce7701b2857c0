"""Optimizer: the base class of kiln's optimizers, with PyTorch's param_groups, state and
state_dict format.

An optimizer holds ``param_groups`` (a list of dicts: ``"params"``, a list of tensors, plus
that group's hyperparameters, filled from ``defaults``) and ``state`` (a dict keyed by the
parameter tensor, holding that parameter's buffers as kiln tensors). ``step()`` hands each
group's parameters, gradients and state buffers to one compiled multi-tensor kernel
(``sgd_step``, ``adam_step``, ...); Python only gathers the lists. Parameters whose ``.grad``
is None are skipped.

``state_dict()`` is PyTorch's format: ``{"state": {index: {name: tensor}}, "param_groups":
[{hyperparameters..., "params": [indices]}]}``, indices numbering the parameters in group
order. A torch optimizer's state_dict whose tensors were converted to kiln tensors loads
into the matching kiln optimizer, and the reverse.

Example:
    >>> import kiln
    >>> w = kiln.randn(3, requires_grad=True)
    >>> opt = kiln.optim.SGD([w], lr=0.1)
    >>> (w * w).sum().backward()
    >>> opt.step()
    >>> opt.zero_grad()
    >>> w.grad is None
    True
"""

from __future__ import annotations

import copy
import warnings
from collections import defaultdict
from collections.abc import Callable
from itertools import chain
from typing import Any

import numpy as np

from kiln.autograd import enable_grad
from kiln.tensor import Tensor, _wrap

__all__ = ["Optimizer", "required"]


class _RequiredParameter:
    """Marks a hyperparameter that has no default and must be given."""

    def __repr__(self) -> str:
        return "<required parameter>"


required = _RequiredParameter()


def _scalar(v) -> float:
    """A hyperparameter as a Python float (a 1-element tensor is accepted, like PyTorch's lr)."""
    return float(v.item()) if isinstance(v, Tensor) else float(v)


def _check_lr(lr) -> None:
    if isinstance(lr, Tensor) and lr.numel() != 1:
        raise ValueError("Tensor lr must be 1-element")
    if not 0.0 <= _scalar(lr):
        raise ValueError(f"Invalid learning rate: {lr}")


def _check_flags(name: str, differentiable: bool = False) -> None:
    if differentiable:
        raise NotImplementedError(f"{name}: differentiable=True is not supported by kiln")


def _state_array(value, like: np.ndarray | None) -> Tensor:
    """A loaded state value as a kiln tensor the kernels can write: C-contiguous, writeable,
    and of the parameter's dtype (``like``), or float32 for ``step`` (``like`` None)."""
    if isinstance(value, Tensor):
        arr = value.data
    else:
        arr = np.asarray(value)
    dtype = np.float32 if like is None and arr.dtype.kind != "f" else (
        arr.dtype if like is None else like.dtype)
    if like is not None and arr.shape != like.shape:
        raise ValueError(
            f"load_state_dict: state tensor of shape {arr.shape} does not match its parameter's "
            f"shape {like.shape}"
        )
    if isinstance(value, Tensor) and arr.dtype == dtype and arr.flags.c_contiguous and \
            arr.flags.writeable:
        return value  # PyTorch's .to() returns the same tensor when nothing changes
    return _wrap(np.array(arr, dtype=dtype, order="C", copy=True))


def _params_with_grad(params: list[Tensor]) -> tuple[list[Tensor], list, list]:
    """The parameters that have a gradient, their arrays, and their gradients' arrays
    (made C-contiguous; the kernels check shapes and dtypes)."""
    ps, arrays, gs = [], [], []
    for p in params:  # one plain loop: comprehensions and all() are calls of their own
        g = p.grad
        if g is not None:
            ps.append(p)
            arrays.append(p.data)
            g = g.data
            gs.append(g if g.flags.c_contiguous else np.ascontiguousarray(g))
    return ps, arrays, gs


def _bump_versions(params: list[Tensor]) -> None:
    # the kernels update parameters in place: autograd must see that saved tensors changed
    for p in params:
        p._version += 1


class Optimizer:
    """Base class: param_groups, state, zero_grad, state_dict / load_state_dict.

    Subclasses implement ``_step_group(group)``, which runs the kernel for one group.
    """

    def __init__(self, params, defaults: dict[str, Any]) -> None:
        self.defaults = defaults
        if isinstance(params, Tensor):
            raise TypeError(
                "params argument given to the optimizer should be an iterable of Tensors or "
                "dicts, but got kiln.Tensor"
            )
        self.state: defaultdict[Tensor, dict[str, Any]] = defaultdict(dict)
        self.param_groups: list[dict[str, Any]] = []
        param_groups = list(params)
        if len(param_groups) == 0:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(param_groups[0], dict):
            param_groups = [{"params": param_groups}]
        for group in param_groups:
            self.add_param_group(dict(group))

    def __repr__(self) -> str:
        lines = [self.__class__.__name__ + " ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for key in sorted(group):
                if key != "params":
                    lines.append(f"    {key}: {group[key]}")
        lines.append(")")
        return "\n".join(lines)

    def __getstate__(self) -> dict[str, Any]:
        return {"defaults": self.defaults, "state": self.state, "param_groups": self.param_groups}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    # ---- groups -------------------------------------------------------------------
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group of parameters (a dict with "params" and optional hyperparameters)."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group).__name__}")
        params = param_group["params"]
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, set):
            raise TypeError(
                "optimizer parameters need to be organized in ordered collections, but the "
                "ordering of tensors in sets will change between runs. Please use a list instead."
            )
        else:
            params = list(params)
        names = [p[0] for p in params if isinstance(p, tuple)]
        params = [p[1] if isinstance(p, tuple) else p for p in params]
        if names:
            if len(names) != len(params):
                raise ValueError(
                    "all optimizer params should be with/without names. Some param names are "
                    "missing"
                )
            param_group["param_names"] = names
        param_group["params"] = params
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(
                    "optimizer can only optimize Tensors, but one of the params is "
                    f"{type(p).__module__}.{type(p).__name__}"
                )
            if not p.is_leaf:
                raise ValueError("can't optimize a non-leaf Tensor")
            if p.data.dtype.kind != "f":
                raise TypeError(
                    f"optimizer can only optimize floating-point tensors, got {p.dtype}")
        for name, default in self.defaults.items():
            if default is required and name not in param_group:
                raise ValueError(
                    "parameter group didn't specify a value of required optimization parameter "
                    + name
                )
            param_group.setdefault(name, default)
        if len({id(p) for p in params}) != len(params):
            warnings.warn(
                "optimizer contains a parameter group with duplicate parameters; in future, "
                "this will cause an error",
                stacklevel=3,
            )
            seen: set[int] = set()
            param_group["params"] = params = [
                p for p in params if not (id(p) in seen or seen.add(id(p)))]
        existing = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in existing for p in params):
            raise ValueError("some parameters appear in more than one parameter group")
        self.param_groups.append(param_group)

    # ---- gradients and steps -----------------------------------------------------------
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the gradients of all parameters (to None by default, else to zeros)."""
        for group in self.param_groups:
            for p in group["params"]:
                g = p.grad
                if g is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    g.grad_fn, g.requires_grad = None, False
                    if g.data.flags.writeable:
                        g.data[...] = 0
                        g._version += 1
                    else:
                        p.grad = _wrap(np.zeros_like(g.data))

    def step(self, closure: Callable[[], Any] | None = None):
        """One optimization step over every group; ``closure`` re-evaluates the loss."""
        loss = None
        self._opt_called = True  # lr schedulers warn when they step before the optimizer
        if closure is not None:
            with enable_grad():
                loss = closure()
        for group in self.param_groups:
            self._step_group(group)
        return loss

    def _step_group(self, group: dict[str, Any]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    # ---- state_dict ------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """``{"state": {index: {...}}, "param_groups": [...]}`` in PyTorch's format.

        The state tensors are the optimizer's own (not copies), as in PyTorch.
        """
        mapping: dict[int, int] = {}
        start = 0

        def pack(group: dict[str, Any]) -> dict[str, Any]:
            nonlocal start
            packed = {k: v for k, v in group.items() if k != "params"}
            for i, p in enumerate(group["params"], start):
                mapping.setdefault(id(p), i)
            packed["params"] = [mapping[id(p)] for p in group["params"]]
            start += len(packed["params"])
            return packed

        groups = [pack(g) for g in self.param_groups]
        state = {(mapping[id(k)] if isinstance(k, Tensor) else k): v for k, v in self.state.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state_dict made by ``state_dict()`` (kiln's, or PyTorch's converted to kiln
        tensors). Groups and their sizes must match; state tensors must have their
        parameter's shape."""
        if not isinstance(state_dict, dict) or "state" not in state_dict or \
                "param_groups" not in state_dict:
            raise ValueError("load_state_dict: expected a dict with 'state' and 'param_groups'")
        groups = self.param_groups
        saved_groups = copy.deepcopy(state_dict["param_groups"])
        if len(groups) != len(saved_groups):
            raise ValueError(
                "loaded state dict has a different number of parameter groups "
                f"({len(saved_groups)} vs {len(groups)} in the optimizer)"
            )
        for i, (g, s) in enumerate(zip(groups, saved_groups, strict=True)):
            if len(g["params"]) != len(s["params"]):
                raise ValueError(
                    "loaded state dict contains a parameter group that doesn't match the size "
                    f"of optimizer's group (group {i}: {len(s['params'])} saved vs "
                    f"{len(g['params'])} parameters)"
                )
        id_map = dict(zip(chain.from_iterable(g["params"] for g in saved_groups),
                          chain.from_iterable(g["params"] for g in groups), strict=True))
        state: defaultdict[Tensor, dict[str, Any]] = defaultdict(dict)
        for k, v in state_dict["state"].items():
            if k not in id_map:
                state[k] = v
                continue
            param = id_map[k]
            if not isinstance(v, dict):
                raise ValueError(f"load_state_dict: state of parameter {k} must be a dict")
            try:
                state[param] = {
                    name: (_state_array(val, None if name == "step" else param.data)
                           if isinstance(val, Tensor | np.ndarray) or name == "step" else val)
                    for name, val in v.items()
                }
            except ValueError as e:
                raise ValueError(f"load_state_dict: parameter {k}: {e}") from None
        for g, s in zip(groups, saved_groups, strict=True):
            s["params"] = g["params"]
            if "param_names" in g and "param_names" not in s:
                s["param_names"] = g["param_names"]
        self.__setstate__({"state": state, "param_groups": saved_groups})
        for group in self.param_groups:  # keys a saved dict may lack (older torch versions)
            for name, default in self.defaults.items():
                group.setdefault(name, default)
