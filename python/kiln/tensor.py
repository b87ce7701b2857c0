"""Tensor: an n-dimensional array (NumPy on the CPU) with reverse-mode autograd.

A Tensor holds ``data`` (the backing array), ``requires_grad``, ``grad`` and, for
results of recorded ops, ``grad_fn`` (the graph node that made it). Operators
and methods are thin forwards to ``kiln.ops``; this file holds only state,
conversion and printing, so the per-op cost from Python stays a few
microseconds.

Example:
    >>> import kiln
    >>> x = kiln.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    >>> y = (x @ x).relu().sum()
    >>> y.backward()
    >>> x.grad.shape
    kiln.Size([2, 2])
"""

from __future__ import annotations

import math
import weakref

import numpy as np

from kiln import _dtype

_DEFAULT_FLOAT = np.dtype(np.float32)


class Size(tuple):
    """Shape tuple, printed like PyTorch's ``torch.Size``."""

    def __repr__(self) -> str:
        return f"kiln.Size({list(self)})"

    def numel(self) -> int:
        return math.prod(self)


class Tensor:
    # Optional marks (an unset slot costs nothing): _param is set on tensors made by
    # kiln.nn.Parameter; _fresh on a gradient whose buffer no one else holds, which the
    # autograd engine may then adopt as a leaf's .grad without copying (autograd.fresh).
    # _post_hooks holds register_post_accumulate_grad_hook's hooks (leaves only).
    __slots__ = ("data", "requires_grad", "grad", "grad_fn", "_hooks", "_version", "_param",
                 "_fresh", "_post_hooks", "__weakref__")
    # NumPy defers binary operators to Tensor (ndarray + Tensor -> Tensor.__radd__)
    __array_priority__ = 1000.0

    def __init__(self, data, requires_grad: bool = False) -> None:
        arr = data if type(data) is np.ndarray else np.asarray(data)
        if arr.dtype not in _dtype._FROM_NP:
            kind = arr.dtype.kind
            arr = arr.astype(_DEFAULT_FLOAT if kind == "f" else _dtype.storable(arr.dtype))
        self.data = arr
        self.grad = None
        self.grad_fn = None
        self._hooks = None
        self._version = 0
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    # ---- metadata -------------------------------------------------------------
    @property
    def shape(self) -> Size:
        return Size(self.data.shape)

    def size(self, dim: int | None = None):
        if dim is None:
            return Size(self.data.shape)
        return self.data.shape[_norm_dim(dim, self.data.ndim, "size")]

    @property
    def dtype(self) -> _dtype.dtype:
        return _dtype._FROM_NP[self.data.dtype]

    @property
    def device(self) -> str:
        from kiln.device import device_of

        return device_of(self.data)

    @property
    def ndim(self) -> int:
        return self.data.ndim

    def dim(self) -> int:
        return self.data.ndim

    def numel(self) -> int:
        return self.data.size

    def element_size(self) -> int:
        return self.data.itemsize

    @property
    def is_leaf(self) -> bool:
        return self.grad_fn is None

    def is_contiguous(self) -> bool:
        return self.data.flags.c_contiguous

    def is_floating_point(self) -> bool:
        return self.data.dtype.kind == "f"

    def stride(self, dim: int | None = None):
        st = tuple(s // self.data.itemsize for s in self.data.strides)
        return st if dim is None else st[_norm_dim(dim, self.data.ndim, "stride")]

    def __len__(self) -> int:
        if self.data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.data.shape[0]

    # ---- autograd state ---------------------------------------------------------
    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        if requires_grad and self.data.dtype.kind != "f":
            raise RuntimeError(
                f"only Tensors of floating point dtype can require gradients (got {self.dtype})"
            )
        if not requires_grad and self.grad_fn is not None:
            raise RuntimeError(
                "you can only change requires_grad flags of leaf variables; use detach()"
            )
        self.requires_grad = bool(requires_grad)
        return self

    def detach(self) -> Tensor:
        return _wrap(self.data)

    def detach_(self) -> Tensor:
        self.grad_fn = None
        self.requires_grad = False
        return self

    def retain_grad(self) -> None:
        if self.grad_fn is None:
            return
        self.grad_fn.retain = weakref.ref(self)

    def register_hook(self, hook):
        """Call ``hook(grad)`` when this tensor's gradient is computed; it may return a new one."""
        if not self.requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that doesn't require gradient")
        if self.grad_fn is None:
            hooks = self._hooks = self._hooks or []
        else:
            hooks = self.grad_fn.hooks = self.grad_fn.hooks or []
        hooks.append(hook)
        return _HookHandle(hooks, hook)

    def register_post_accumulate_grad_hook(self, hook):
        """Call ``hook(self)`` once per backward, after every contribution to this leaf's
        ``.grad`` has been accumulated (``torch.Tensor.register_post_accumulate_grad_hook``).

        >>> import kiln
        >>> w = kiln.ones(2, requires_grad=True)
        >>> seen = []
        >>> h = w.register_post_accumulate_grad_hook(lambda p: seen.append(p.grad.tolist()))
        >>> (w * w + w).sum().backward()
        >>> seen
        [[3.0, 3.0]]
        """
        if not self.requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that doesn't require gradient")
        if self.grad_fn is not None:
            raise RuntimeError(
                "post accumulate grad hooks cannot be registered on non-leaf tensors")
        hooks = getattr(self, "_post_hooks", None)
        if hooks is None:
            hooks = self._post_hooks = []
        hooks.append(hook)
        _autograd._post_hooks_live = True  # the engine counts leaf contributions from now on
        return _HookHandle(hooks, hook)

    def backward(self, gradient=None, retain_graph=None, create_graph=False, inputs=None) -> None:
        """Accumulate d(self)/d(leaf) into every leaf's ``.grad`` (``inputs``: only those)."""
        if inputs is not None:
            from kiln.autograd import backward

            return backward(self, gradient, retain_graph, create_graph, inputs)
        _autograd._run([self], [gradient], retain_graph, create_graph, None)

    # ---- conversion -------------------------------------------------------------
    def numpy(self, *, force: bool = False) -> np.ndarray:
        if self.requires_grad and not force:
            raise RuntimeError(
                "Can't call numpy() on Tensor that requires grad. "
                "Use tensor.detach().numpy() instead."
            )
        from kiln.device import to_host

        return to_host(self.data)

    def __array__(self, dtype=None, copy=None):
        arr = self.data
        if dtype is not None:
            return arr.astype(dtype)
        return arr

    def item(self):
        if self.data.size != 1:
            raise RuntimeError(
                f"a Tensor with {self.data.size} elements cannot be converted to Scalar"
            )
        return self.data.reshape(()).item()

    def tolist(self):
        return self.data.tolist()

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __bool__(self) -> bool:
        if self.data.size != 1:
            raise RuntimeError(
                f"Boolean value of Tensor with {self.data.size} values is ambiguous"
            )
        return bool(self.data.reshape(()).item())

    def __index__(self) -> int:
        if self.data.dtype.kind not in "iub" or self.data.size != 1:
            raise TypeError("only integer tensors of a single element can be converted to an index")
        return int(self.item())

    def __dlpack__(self, *args, **kwargs):
        return self.data.__dlpack__(*args, **kwargs)

    def __dlpack_device__(self):
        return self.data.__dlpack_device__()

    # identity hash (tensors key optimizer state), as PyTorch's; object's C slot, not a
    # Python method: ~1 us less per dict lookup keyed by a tensor
    __hash__ = object.__hash__

    def __repr__(self) -> str:
        from kiln._format import tensor_repr

        return tensor_repr(self)

    __str__ = __repr__

    def __deepcopy__(self, memo):
        """A new leaf with copied data (same device), requires_grad, grad and parameter mark."""
        if self.grad_fn is not None:
            raise RuntimeError(
                "Only Tensors created explicitly by the user (graph leaves) support the deepcopy "
                "protocol at the moment; detach() it first"
            )
        if id(self) in memo:
            return memo[id(self)]
        new = _wrap(self.data.copy())
        memo[id(self)] = new
        if getattr(self, "_param", False):
            new._param = True
        new.requires_grad = self.requires_grad
        if self.grad is not None:
            new.grad = self.grad.__deepcopy__(memo)
        return new

    def __reduce__(self):
        return (_rebuild, (self.numpy(force=True), self.requires_grad))


def _rebuild(arr, requires_grad):
    return Tensor(arr, requires_grad=requires_grad)


class _HookHandle:
    def __init__(self, hooks, hook) -> None:
        self.hooks, self.hook = hooks, hook

    def remove(self) -> None:
        if self.hook in self.hooks:
            self.hooks.remove(self.hook)


_new = object.__new__


def _wrap(arr) -> Tensor:
    """Fast internal constructor: wrap an array kiln already owns (no checks, no copy)."""
    t = _new(Tensor)
    t.data = arr
    t.requires_grad = False
    t.grad = None
    t.grad_fn = None
    t._hooks = None
    t._version = 0
    return t


import kiln.autograd as _autograd  # noqa: E402

_autograd.Tensor = Tensor
_autograd._wrap = _wrap


def _norm_dim(dim: int, ndim: int, op: str) -> int:
    n = max(ndim, 1)
    if not -n <= dim < n:
        raise IndexError(
            f"{op}: dimension out of range (expected to be in range of [{-n}, {n - 1}], "
            f"but got {dim})"
        )
    return dim + n if dim < 0 else dim
