"""kiln: a small neural-network engine with compiled kernels and a PyTorch-shaped API.

Example:
    >>> import kiln
    >>> x = kiln.randn(4, 3, requires_grad=True)
    >>> loss = (x @ x.T).relu().sum()
    >>> loss.backward()
    >>> x.grad.shape
    kiln.Size([4, 3])
"""

import os as _os

__version__ = "0.1.0"

from kiln import _cpu

# Route NumPy allocations through kiln's caching allocator (DESIGN.md, kernel contract):
# a training step then reuses its buffers instead of faulting fresh pages each call.
if _os.environ.get("KILN_CPU_ALLOCATOR", "pool") != "system":
    _cpu.install_numpy_allocator()

from kiln import (
    _methods,  # noqa: E402, F401  (attaches operators to Tensor)
    autograd,  # noqa: E402
    nn,  # noqa: E402
)
from kiln._dtype import bool_ as bool  # noqa: E402, A001
from kiln._dtype import double, dtype, float, float32, float64, int64, long  # noqa: E402, A001
from kiln.autograd import enable_grad, is_grad_enabled, no_grad, set_grad_enabled  # noqa: E402
from kiln.creation import (  # noqa: E402
    arange,
    as_tensor,
    empty,
    empty_like,
    eye,
    from_dlpack,
    from_numpy,
    full,
    full_like,
    linspace,
    manual_seed,
    ones,
    ones_like,
    rand,
    rand_like,
    randint,
    randint_like,
    randn,
    randn_like,
    randperm,
    tensor,
    zeros,
    zeros_like,
)
from kiln.device import info as _info  # noqa: E402
from kiln.ops.activation import (  # noqa: E402
    log_softmax,
    relu,
    sigmoid,
    softmax,
    tanh,
)
from kiln.ops.elementwise import (  # noqa: E402
    abs,
    add,
    allclose,
    clamp,
    clip,
    cos,
    div,
    eq,
    equal,
    exp,
    expm1,
    ge,
    gt,
    isfinite,
    isinf,
    isnan,
    le,
    log,
    log1p,
    logical_and,
    logical_not,
    logical_or,
    lt,
    maximum,
    minimum,
    mul,
    ne,
    neg,
    pow,
    reciprocal,
    rsqrt,
    sign,
    sin,
    sqrt,
    square,
    sub,
    where,
)
from kiln.ops.matmul import bmm, matmul, mm  # noqa: E402
from kiln.ops.movement import (  # noqa: E402
    cat,
    chunk,
    concat,
    expand,
    flatten,
    flip,
    narrow,
    permute,
    reshape,
    split,
    squeeze,
    stack,
    transpose,
    unflatten,
    unsqueeze,
)
from kiln.ops.reduce import (  # noqa: E402
    amax,
    amin,
    argmax,
    argmin,
    logsumexp,
    max,
    mean,
    min,
    prod,
    std,
    sum,
    var,
)
from kiln.tensor import Size, Tensor  # noqa: E402


def set_num_threads(n: int) -> None:
    """Threads used by the CPU kernels (OpenMP)."""
    _cpu.set_num_threads(int(n))


def get_num_threads() -> int:
    return _cpu.get_num_threads()


def info() -> dict:
    """Version, CPU instruction set and threads, allocator, and what serves "cuda" (and why)."""
    return _info()


def memory_stats() -> dict:
    """The CPU caching allocator's counters (allocated, peak, cached bytes, hits, misses)."""
    return _cpu.allocator_stats()


def empty_cache() -> None:
    """Return the CPU caching allocator's free blocks to the system."""
    _cpu.empty_cache()


def is_tensor(obj) -> bool:
    return isinstance(obj, Tensor)


def numel(t: Tensor) -> int:
    return t.numel()


# checkpoints (safetensors) and the RNG state they carry
from kiln import io  # noqa: E402
from kiln.creation import get_rng_state, set_rng_state  # noqa: E402
from kiln.io import load, save  # noqa: E402

# isort: split
# optim
from kiln import optim  # noqa: E402, F401

_LAZY = ("data", "metrics", "train")  # imported on first use (tqdm, datasets): fast `import kiln`


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return importlib.import_module(f"kiln.{name}")
    raise AttributeError(f"module 'kiln' has no attribute {name!r}")
