"""Containers and shape-only modules: Sequential, ModuleList, ModuleDict, Identity,
Flatten, Unflatten — PyTorch's behaviour, indexing and ``repr``.

Example:
    >>> import kiln
    >>> from kiln import nn
    >>> net = nn.Sequential(nn.Flatten(), nn.Identity())
    >>> net(kiln.zeros(2, 3, 4)).shape
    kiln.Size([2, 12])
    >>> len(net), type(net[0]).__name__
    (2, 'Flatten')
"""

from __future__ import annotations

import operator
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping

from kiln import autograd as _autograd
from kiln.nn.activation import ReLU
from kiln.nn.linear import Linear
from kiln.nn.module import Module, _addindent
from kiln.ops.linear_chain import linear_chain as _linear_chain
from kiln.ops.matmul import linear as _linear


def _index(idx, n: int, what: str) -> int:
    idx = operator.index(idx)
    if not -n <= idx < n:
        raise IndexError(f"index {idx} is out of range for {what} of length {n}")
    return idx % n


class Sequential(Module):
    """Modules applied in order: ``Sequential(m1, m2, ...)`` or ``Sequential(OrderedDict)``."""

    def __init__(self, *args) -> None:
        super().__init__()
        if len(args) == 1 and isinstance(args[0], OrderedDict):
            for name, m in args[0].items():
                self.add_module(name, m)
        else:
            for i, m in enumerate(args):
                self.add_module(str(i), m)

    def __getitem__(self, idx):
        if isinstance(idx, slice):
            return type(self)(OrderedDict(list(self._modules.items())[idx]))
        return list(self._modules.values())[_index(idx, len(self), "Sequential")]

    def __setitem__(self, idx, module: Module) -> None:
        key = list(self._modules)[_index(idx, len(self), "Sequential")]
        setattr(self, key, module)

    def __delitem__(self, idx) -> None:
        keys = list(self._modules)
        for key in keys[idx] if isinstance(idx, slice) else [keys[_index(idx, len(keys),
                                                                        "Sequential")]]:
            del self._modules[key]
        # renumber 0..n-1, as PyTorch does
        mods = list(self._modules.values())
        self._modules.clear()
        for i, m in enumerate(mods):
            self._modules[str(i)] = m

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def append(self, module: Module) -> Sequential:
        self.add_module(str(len(self)), module)
        return self

    def extend(self, modules: Iterable[Module]) -> Sequential:
        for m in modules:
            self.append(m)
        return self

    def insert(self, index: int, module: Module) -> Sequential:
        n = len(self)
        if not -n <= index <= n:
            raise IndexError(f"Index out of range: {index}")
        index = index % (n + 1) if index < 0 else index
        mods = list(self._modules.values())
        mods.insert(index, module)
        self._modules.clear()
        for i, m in enumerate(mods):
            self._modules[str(i)] = m
        return self

    def pop(self, idx: int) -> Module:
        m = self[idx]
        del self[idx]
        return m

    def forward(self, input):  # noqa: A002 - PyTorch's name
        mods = list(self._modules.values())
        i, n = 0, len(mods)
        while i < n:
            m = mods[i]
            p = _linear_params(m) if type(m) is Linear else None
            if p is not None:
                # A run of Linear layers, each maybe followed by ReLU: one GEMM per layer
                # with bias and ReLU in its write-back, and for two or more layers one
                # autograd node for the whole run (linear_chain); the same values and
                # gradients as the modules in turn. Not when a parameter has
                # post-accumulate-grad hooks (DDP's): they must see each layer's gradients
                # as backward makes them, last layer first, not all at the chain's end.
                layers = []
                while p is not None:
                    relu = i + 1 < n and type(mods[i + 1]) is ReLU and _plain(mods[i + 1])
                    layers.append((p[0], p[1], "relu" if relu else "none"))
                    i += 2 if relu else 1
                    p = _linear_params(mods[i]) if i < n and type(mods[i]) is Linear else None
                if len(layers) > 1 and (not _autograd._post_hooks_live
                                        or not _post_hooked(layers)):
                    input = _linear_chain(input, layers)
                else:
                    for w, b, act in layers:
                        input = _linear(input, w, b, act)
                continue
            input = m(input)
            i += 1
        return input


def _post_hooked(layers) -> bool:
    return any(t is not None and getattr(t, "_post_hooks", None)
               for w, b, _ in layers for t in (w, b))


# Both read the instance dict once: every attribute read on a Module goes through
# Module.__getattr__'s slot (~0.1 us each), and this runs per forward.
def _plain(m: Module) -> bool:
    """``m`` runs its class's own forward with no hooks: Sequential may fuse it."""
    d = m.__dict__
    return not d["_forward_hooks"] and not d["_forward_pre_hooks"] and "forward" not in d


def _linear_params(m: Linear):
    """(weight, bias) of a plain Linear (its parameters in its table, not re-registered as
    plain attributes), else None."""
    d = m.__dict__
    if d["_forward_hooks"] or d["_forward_pre_hooks"] or "forward" in d:
        return None
    ps = d["_parameters"]
    if "weight" in ps and "bias" in ps:
        return ps["weight"], ps["bias"]
    return None


class ModuleList(Module):
    """A list of modules, registered so their parameters are visible to the parent."""

    def __init__(self, modules: Iterable[Module] | None = None) -> None:
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def __getitem__(self, idx):
        if isinstance(idx, slice):
            return type(self)(list(self._modules.values())[idx])
        return self._modules[str(_index(idx, len(self), "ModuleList"))]

    def __setitem__(self, idx, module: Module) -> None:
        setattr(self, str(_index(idx, len(self), "ModuleList")), module)

    def __delitem__(self, idx) -> None:
        mods = list(self._modules.values())
        if isinstance(idx, slice):
            del mods[idx]
        else:
            del mods[_index(idx, len(mods), "ModuleList")]
        self._modules.clear()
        for i, m in enumerate(mods):
            self._modules[str(i)] = m

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def __iadd__(self, modules: Iterable[Module]) -> ModuleList:
        return self.extend(modules)

    def append(self, module: Module) -> ModuleList:
        self.add_module(str(len(self)), module)
        return self

    def extend(self, modules: Iterable[Module]) -> ModuleList:
        if isinstance(modules, Module) and not isinstance(modules, (ModuleList, Sequential)):
            raise TypeError("ModuleList.extend should be called with an iterable, but got "
                            + type(modules).__name__)
        for m in modules:
            self.append(m)
        return self

    def insert(self, index: int, module: Module) -> None:
        mods = list(self._modules.values())
        mods.insert(index, module)
        self._modules.clear()
        for i, m in enumerate(mods):
            self.add_module(str(i), m)

    def pop(self, idx: int = -1) -> Module:
        m = self[idx]
        del self[idx]
        return m

    def __repr__(self) -> str:
        # consecutive identical children print once, as "(0-2): 3 x Linear(...)" (PyTorch)
        reprs = [repr(m) for m in self]
        if not reprs:
            return self._get_name() + "()"
        blocks: list[list] = []
        for i, r in enumerate(reprs):
            if blocks and blocks[-1][2] == r:
                blocks[-1][1] = i
            else:
                blocks.append([i, i, r])
        lines = []
        for start, end, r in blocks:
            head = f"({start})" if start == end else f"({start}-{end}): {end - start + 1} x"
            lines.append(_addindent(f"{head}: {r}" if start == end else f"{head} {r}", 2))
        return self._get_name() + "(\n  " + "\n  ".join(lines) + "\n)"


class ModuleDict(Module):
    """An ordered dict of modules, registered so their parameters are visible."""

    def __init__(self, modules: Mapping[str, Module] | Iterable | None = None) -> None:
        super().__init__()
        if modules is not None:
            self.update(modules)

    def __getitem__(self, key: str) -> Module:
        return self._modules[key]

    def __setitem__(self, key: str, module: Module) -> None:
        self.add_module(key, module)

    def __delitem__(self, key: str) -> None:
        del self._modules[key]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[str]:
        return iter(self._modules)

    def __contains__(self, key: str) -> bool:
        return key in self._modules

    def clear(self) -> None:
        self._modules.clear()

    def pop(self, key: str) -> Module:
        m = self[key]
        del self[key]
        return m

    def keys(self):
        return self._modules.keys()

    def items(self):
        return self._modules.items()

    def values(self):
        return self._modules.values()

    def update(self, modules) -> None:
        pairs = modules.items() if isinstance(modules, Mapping) else modules
        for j, pair in enumerate(pairs):
            if isinstance(modules, Mapping):
                k, m = pair
            else:
                if len(pair) != 2:
                    raise ValueError(f"ModuleDict update sequence element #{j} has length "
                                     f"{len(pair)}; 2 is required")
                k, m = pair
            self[k] = m


class Identity(Module):
    """Returns its input; accepts and ignores constructor arguments, as PyTorch's."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__()

    def forward(self, input):  # noqa: A002
        return input


class Flatten(Module):
    """Flatten dims ``start_dim..end_dim`` (default: all but the batch dimension)."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, input):  # noqa: A002
        return input.flatten(self.start_dim, self.end_dim)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Unflatten(Module):
    """Expand dimension ``dim`` into ``unflattened_size``."""

    def __init__(self, dim: int, unflattened_size) -> None:
        super().__init__()
        if not isinstance(unflattened_size, (tuple, list)):
            raise TypeError("unflattened_size must be a tuple of ints, "
                            f"but found type {type(unflattened_size).__name__}")
        self.dim, self.unflattened_size = dim, tuple(unflattened_size)

    def forward(self, input):  # noqa: A002
        return input.unflatten(self.dim, self.unflattened_size)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, unflattened_size={self.unflattened_size}"
