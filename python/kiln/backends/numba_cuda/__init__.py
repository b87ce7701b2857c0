"""The Numba CUDA kernel table: the CUDA table's kernels written with ``numba.cuda``.

It serves "cuda" where ``kiln._cuda`` is missing or sees no GPU (or when
``KILN_CUDA_BACKEND=numba``). Each kernel has the CPU table's name and arguments
(``kiln._cpu.<name>.__doc__``) and takes device arrays: numba device arrays, or any
object exposing ``__cuda_array_interface__`` (PyTorch, CuPy, kiln._cuda buffers), read
in place without a copy. Outputs are written into the arrays the caller passes.

Nothing here imports numba until a kernel is first used: the family modules are
imported lazily through the module ``__getattr__``, and each ``@cuda.jit`` kernel is
compiled on its first launch for the dtypes it sees (``cache=True`` keeps the result
on disk where Numba allows). Without a GPU, ``NUMBA_ENABLE_CUDASIM=1`` (set before numba
is imported) runs the same kernels in Numba's CUDA simulator, which is how the test suite
checks them in CI.

Example (the simulator or a GPU is needed to run it):
    >>> from kiln.backends import numba_cuda as nc   # doctest: +SKIP
    >>> from numba import cuda                       # doctest: +SKIP
    >>> x = cuda.to_device(np.array([-1.0, 2.0], np.float32))  # doctest: +SKIP
    >>> out = cuda.device_array_like(x); nc.relu(x, out)        # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types

# kernel name -> family module (kiln.backends.numba_cuda.<family>)
KERNELS: dict[str, str] = {
    # activation
    **{n: "activation" for n in (
        "relu", "relu_backward", "leaky_relu", "leaky_relu_backward", "sigmoid",
        "sigmoid_backward", "tanh", "tanh_backward", "gelu", "gelu_backward", "silu",
        "silu_backward", "softplus", "softplus_backward", "elu", "elu_backward")},
    # softmax and loss
    **{n: "softmax" for n in (
        "softmax", "softmax_backward", "log_softmax", "log_softmax_backward")},
    **{n: "loss" for n in ("cross_entropy", "cross_entropy_backward")},
    # dropout (Philox4x32-10, the CPU's counter convention)
    **{n: "dropout" for n in ("dropout", "dropout_backward")},
    # gemm
    **{n: "gemm" for n in ("matmul", "matmul_naive", "matmul_relu_backward")},
    # convolution (implicit GEMM)
    **{n: "conv" for n in ("conv2d", "conv2d_dgrad", "conv2d_wgrad")},
    # embedding
    **{n: "embedding" for n in ("embedding", "embedding_backward", "embedding_renorm")},
    # normalization
    **{n: "norm" for n in (
        "layer_norm", "layer_norm_backward", "group_norm", "group_norm_backward")},
    **{n: "norm_batch" for n in ("batch_norm", "batch_norm_backward")},
    # pooling
    **{n: "pool" for n in (
        "max_pool2d", "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward",
        "adaptive_avg_pool2d", "adaptive_avg_pool2d_backward")},
    # optimizers and gradient utilities
    **{n: "optim" for n in (
        "sgd_step", "adam_step", "rmsprop_step", "adagrad_step", "grad_norm", "grad_scale",
        "grad_clamp")},
    # attention (tiled online softmax)
    **{n: "attention" for n in ("attention_forward", "attention_backward")},
    # recurrent layers (host time loop, one fused cell kernel per step)
    **{n: "rnn" for n in ("rnn_forward", "rnn_backward")},
}

NAME = "kiln.backends.numba_cuda"


def names() -> list[str]:
    """Every kernel name of the table."""
    return sorted(KERNELS)


def status() -> tuple[bool, str]:
    """(whether the table can run, why): numba importable and a GPU or the simulator found."""
    if importlib.util.find_spec("numba") is None:
        return False, "numba is not installed (pip install 'kiln[numba]')"
    try:
        from numba import config, cuda  # noqa: PLC0415
    except Exception as e:  # numba present but its CUDA target is broken
        return False, f"numba.cuda failed to import ({type(e).__name__}: {e})"
    if config.ENABLE_CUDASIM:
        return True, "Numba CUDA simulator (NUMBA_ENABLE_CUDASIM=1): kernels run on the CPU"
    try:
        if cuda.is_available():
            return True, f"Numba CUDA on {cuda.get_current_device().name.decode()}"
        return False, "numba.cuda finds no CUDA GPU or driver"
    except Exception as e:
        return False, f"numba.cuda: {type(e).__name__}: {e}"


def is_available() -> bool:
    return status()[0]


def __getattr__(name: str):
    family = KERNELS.get(name)
    if family is None:
        raise AttributeError(f"module {NAME!r} has no kernel {name!r}")
    try:
        mod = importlib.import_module(f"{NAME}.{family}")
    except ModuleNotFoundError as e:
        if e.name != f"{NAME}.{family}":
            raise
        mod = None
    fn = getattr(mod, name, None)
    if fn is None:
        raise NotImplementedError(
            f"{name}: not implemented in the Numba CUDA table ({NAME}.{family})")
    globals()[name] = fn  # later lookups skip __getattr__
    return fn


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(KERNELS))


class _Table(types.ModuleType):
    """The package's module type. Importing a family module binds it as an attribute of
    the package; for the families named like one of their kernels (softmax, dropout,
    embedding) that would shadow the kernel, so module bindings of kernel names are
    refused here (the modules stay reachable through sys.modules / importlib)."""

    def __setattr__(self, name: str, value) -> None:
        if name in KERNELS and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Table
