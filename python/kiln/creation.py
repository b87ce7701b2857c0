"""Tensor creation: tensor, from_numpy, zeros, ones, full, empty, arange, linspace, eye,
randn, rand, randint, the *_like variants, manual_seed, from_dlpack.

Defaults follow PyTorch: Python floats become float32, ints int64, bools bool;
``from_numpy``/``as_tensor`` share memory with the array (zero copy).

Example:
    >>> import kiln
    >>> _ = kiln.manual_seed(0)
    >>> kiln.zeros(2, 3).shape
    kiln.Size([2, 3])
"""

from __future__ import annotations

import builtins

import numpy as np

from kiln import _dtype
from kiln.device import check_device
from kiln.tensor import Tensor, _wrap

_F32 = np.dtype(np.float32)


class _Rng:
    gen = np.random.default_rng()


def manual_seed(seed: int):
    """Seed kiln's global generator (randn, rand, randint, dropout masks, shuffles)."""
    _Rng.gen = np.random.default_rng(int(seed))
    return _Rng.gen


def default_generator() -> np.random.Generator:
    return _Rng.gen


# rng state (checkpoints): the global generator's bit-generator state, a dict of ints
def get_rng_state() -> dict:
    """A copy of kiln's global RNG state (NumPy ``bit_generator.state``: a dict of
    ints and strings, so ``kiln.save`` stores it as JSON).

    >>> import kiln
    >>> state = kiln.get_rng_state()
    >>> a = kiln.rand(3)
    >>> kiln.set_rng_state(state)
    >>> kiln.equal(kiln.rand(3), a)
    True
    """
    import copy

    return copy.deepcopy(_Rng.gen.bit_generator.state)


def set_rng_state(new_state: dict) -> None:
    """Restore a state from :func:`get_rng_state`; later draws repeat bit-exactly."""
    if not isinstance(new_state, dict) or "bit_generator" not in new_state:
        raise TypeError(f"set_rng_state: expected the dict from kiln.get_rng_state(), got "
                        f"{type(new_state).__name__}")
    name = new_state["bit_generator"]
    bg = _Rng.gen.bit_generator
    if type(bg).__name__ != name:
        cls = getattr(np.random, str(name), None)
        if not (isinstance(cls, type) and issubclass(cls, np.random.BitGenerator)):
            raise ValueError(f"set_rng_state: unknown bit generator {name!r}")
        bg = cls()
        _Rng.gen = np.random.Generator(bg)
    try:
        bg.state = new_state
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"set_rng_state: invalid {name} state: {exc}") from None


def philox_seed(generator: np.random.Generator | None = None) -> int:
    """A fresh 64-bit seed for a counter-based (Philox) kernel such as dropout.

    One draw from kiln's global generator per call, so ``kiln.manual_seed`` makes
    every mask reproducible; the kernel derives each element's bits from (seed,
    index) — see csrc/common/philox.h — so the mask does not depend on threads.
    """
    gen = generator if generator is not None else _Rng.gen
    return int(gen.integers(0, 2**63 - 1, dtype=np.int64))


def _shape(size, op: str) -> tuple:
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    out = []
    for s in size:
        if isinstance(s, Tensor):
            s = int(s)
        if not isinstance(s, (int, np.integer)) or isinstance(s, bool):
            raise TypeError(f"{op}: size must be a tuple of ints, got {size!r}")
        if s < 0:
            raise ValueError(f"{op}: negative dimension {s} in size {tuple(size)}")
        out.append(int(s))
    return tuple(out)


def _finish(arr, requires_grad, device, op):
    check_device(device, op)
    t = _wrap(arr)
    if requires_grad:
        t.requires_grad_(True)
    return t


def _infer_np_dtype(data) -> np.dtype:
    arr = np.asarray(data)
    return _dtype.storable(arr.dtype) if arr.dtype.kind != "f" else _F32


def tensor(data, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """Copy ``data`` (nested lists, scalars, arrays, tensors) into a new tensor.

    >>> import kiln
    >>> kiln.tensor([[1, 2], [3, 4]]).dtype, kiln.tensor([0.5]).dtype
    (kiln.int64, kiln.float32)
    """
    if isinstance(data, Tensor):
        arr = np.array(data.data, dtype=_dtype.to_np(dtype) if dtype else data.data.dtype)
    elif isinstance(data, np.ndarray):
        nd = _dtype.to_np(dtype) if dtype is not None else _dtype.storable(data.dtype)
        arr = np.array(data, dtype=nd)
    else:
        try:
            raw = np.array(data)
        except ValueError as e:
            raise ValueError(
                f"tensor: cannot build a tensor from {type(data).__name__}: {e}"
            ) from None
        if raw.dtype == object:
            raise TypeError(
                f"tensor: cannot build a tensor from ragged or non-numeric data {data!r:.80}"
            )
        nd = _dtype.to_np(dtype) if dtype is not None else (
            _F32 if raw.dtype.kind == "f" else _dtype.storable(raw.dtype))
        arr = raw.astype(nd, copy=False)
    return _finish(arr, requires_grad, device, "tensor")


def as_tensor(data, dtype=None, device=None) -> Tensor:
    """Share memory with ``data`` where possible (NumPy arrays of a kiln dtype)."""
    if isinstance(data, Tensor) and dtype is None:
        return data
    if isinstance(data, np.ndarray) and (dtype is None or _dtype.to_np(dtype) == data.dtype):
        if data.dtype in _dtype._FROM_NP:
            return _finish(data, False, device, "as_tensor")
    return tensor(data, dtype=dtype, device=device)


def from_numpy(arr: np.ndarray) -> Tensor:
    """Zero-copy tensor over a NumPy array (float32, float64, int64 or bool).

    >>> import kiln, numpy as np
    >>> a = np.zeros(3, dtype=np.float32)
    >>> t = kiln.from_numpy(a)
    >>> a[0] = 5
    >>> t
    tensor([5., 0., 0.])
    """
    if not isinstance(arr, np.ndarray):
        raise TypeError(f"from_numpy: expected np.ndarray, got {type(arr).__name__}")
    if arr.dtype not in _dtype._FROM_NP:
        raise TypeError(
            f"from_numpy: can't convert np.ndarray of type {arr.dtype}; the supported types are "
            "float32, float64, int64 and bool"
        )
    return _wrap(arr)


def from_dlpack(ext) -> Tensor:
    """Zero-copy tensor from any object implementing ``__dlpack__`` (PyTorch, NumPy, ...)."""
    arr = np.from_dlpack(ext)
    if arr.dtype not in _dtype._FROM_NP:
        raise TypeError(f"from_dlpack: unsupported dtype {arr.dtype}")
    return _wrap(arr)


def _filled(fill, size, dtype, device, requires_grad, op):
    shape = _shape(size, op)
    nd = _dtype.to_np(dtype)
    if fill is None:
        arr = np.empty(shape, dtype=nd)
    elif fill == 0:
        arr = np.zeros(shape, dtype=nd)
    else:
        arr = np.full(shape, fill, dtype=nd)
    return _finish(arr, requires_grad, device, op)


def zeros(*size, dtype=None, device=None, requires_grad=False) -> Tensor:
    return _filled(0, size, dtype, device, requires_grad, "zeros")


def ones(*size, dtype=None, device=None, requires_grad=False) -> Tensor:
    return _filled(1, size, dtype, device, requires_grad, "ones")


def empty(*size, dtype=None, device=None, requires_grad=False) -> Tensor:
    return _filled(None, size, dtype, device, requires_grad, "empty")


def full(size, fill_value, dtype=None, device=None, requires_grad=False) -> Tensor:
    if dtype is None:
        dtype = _dtype.bool_ if isinstance(fill_value, bool) else (
            _dtype.int64 if isinstance(fill_value, (int, np.integer)) else _dtype.float32)
    return _filled(fill_value, (size,) if not isinstance(size, (tuple, list)) else (tuple(size),),
                   dtype, device, requires_grad, "full")


def _like(t: Tensor, dtype):
    return t.data.shape, (dtype if dtype is not None else t.dtype)


def zeros_like(t, dtype=None, device=None, requires_grad=False) -> Tensor:
    s, d = _like(t, dtype)
    return zeros(s, dtype=d, device=device, requires_grad=requires_grad)


def ones_like(t, dtype=None, device=None, requires_grad=False) -> Tensor:
    s, d = _like(t, dtype)
    return ones(s, dtype=d, device=device, requires_grad=requires_grad)


def empty_like(t, dtype=None, device=None, requires_grad=False) -> Tensor:
    s, d = _like(t, dtype)
    return empty(s, dtype=d, device=device, requires_grad=requires_grad)


def full_like(t, fill_value, dtype=None, device=None, requires_grad=False) -> Tensor:
    s, d = _like(t, dtype)
    return full(s, fill_value, dtype=d, device=device, requires_grad=requires_grad)


def rand_like(t, dtype=None, device=None, requires_grad=False) -> Tensor:
    s, d = _like(t, dtype)
    return rand(s, dtype=d, device=device, requires_grad=requires_grad)


def randn_like(t, dtype=None, device=None, requires_grad=False) -> Tensor:
    s, d = _like(t, dtype)
    return randn(s, dtype=d, device=device, requires_grad=requires_grad)


def randint_like(t, low=0, high=None, dtype=None, device=None) -> Tensor:
    if high is None:
        low, high = 0, low
    return randint(low, high, t.data.shape, dtype=dtype or t.dtype, device=device)


def arange(start, end=None, step=1, dtype=None, device=None, requires_grad=False) -> Tensor:
    if end is None:
        start, end = 0, start
    if step == 0:
        raise ValueError("arange: step must be nonzero")
    if dtype is None:
        is_int = all(isinstance(v, (int, np.integer)) for v in (start, end, step))
        dtype = _dtype.int64 if is_int else _dtype.float32
    arr = np.arange(start, end, step, dtype=np.float64).astype(_dtype.to_np(dtype))
    return _finish(arr, requires_grad, device, "arange")


def linspace(start, end, steps: int, dtype=None, device=None, requires_grad=False) -> Tensor:
    if steps < 0:
        raise ValueError(f"linspace: number of steps must be non-negative, got {steps}")
    arr = np.linspace(start, end, steps, dtype=np.float64).astype(_dtype.to_np(dtype))
    return _finish(arr, requires_grad, device, "linspace")


def eye(n: int, m: int | None = None, dtype=None, device=None, requires_grad=False) -> Tensor:
    return _finish(np.eye(n, m, dtype=_dtype.to_np(dtype)), requires_grad, device, "eye")


def _float_dtype(dtype, op):
    nd = _dtype.to_np(dtype)
    if nd.kind != "f":
        raise TypeError(f"{op}: expected a floating point dtype, got {dtype}")
    return nd


def randn(*size, dtype=None, device=None, requires_grad=False, generator=None) -> Tensor:
    nd = _float_dtype(dtype, "randn")
    g = generator or _Rng.gen
    arr = g.standard_normal(_shape(size, "randn"), dtype=nd)
    return _finish(arr, requires_grad, device, "randn")


def rand(*size, dtype=None, device=None, requires_grad=False, generator=None) -> Tensor:
    nd = _float_dtype(dtype, "rand")
    g = generator or _Rng.gen
    arr = g.random(_shape(size, "rand"), dtype=nd)
    return _finish(arr, requires_grad, device, "rand")


def randint(low, high=None, size=None, dtype=None, device=None, generator=None) -> Tensor:
    """``randint(high, size)`` or ``randint(low, high, size)`` like PyTorch."""
    if size is None:
        if high is None:
            raise TypeError("randint: missing size")
        low, high, size = 0, low, high
    if high is None:
        raise TypeError("randint: missing high")
    if high <= low:
        raise ValueError(f"randint: expected low < high, got low={low}, high={high}")
    g = generator or _Rng.gen
    arr = g.integers(low, high, size=_shape((size,), "randint"), dtype=np.int64)
    if dtype is not None:
        arr = arr.astype(_dtype.to_np(dtype))
    return _finish(arr, False, device, "randint")


def randperm(n: int, dtype=None, device=None, generator=None) -> Tensor:
    g = generator or _Rng.gen
    arr = g.permutation(n).astype(_dtype.to_np(dtype) if dtype else np.int64)
    return _finish(arr, False, device, "randperm")


__all__ = [n for n in dir() if not n.startswith("_") and n not in ("annotations", "builtins", "np")]
del builtins
