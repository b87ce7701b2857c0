"""Kernel tables: which one serves a device, and which one runs an op.

Every backend exports the same kernel names with the same arguments (DESIGN.md, the
kernel contract): ``kiln._cpu`` for "cpu"; for "cuda", ``kiln._cuda`` when it imported
and sees a GPU, else the Numba CUDA kernels in ``kiln.backends.numba_cuda``.
``KILN_CUDA_BACKEND=native|numba`` forces one.

Example:
    >>> from kiln import backends
    >>> backends.which("relu", "cpu")
    'kiln._cpu'
"""

from __future__ import annotations


def table_name(device: str = "cuda") -> str:
    """The name of the kernel table serving ``device``; raises with the reason if none."""
    base = str(device).split(":")[0]
    if base == "cpu":
        return "kiln._cpu"
    if base != "cuda":
        raise ValueError(f"which: unknown device {device!r} (expected 'cpu' or 'cuda')")
    from kiln.device import cuda_status  # noqa: PLC0415

    name, why = cuda_status()
    if name is None:
        raise RuntimeError(f"no kernel table serves 'cuda': {why}")
    return name


def table(device: str = "cuda"):
    """The kernel table module serving ``device`` (see ``table_name``)."""
    import importlib  # noqa: PLC0415

    return importlib.import_module(table_name(device).split(" ")[0])


def which(op: str, device: str = "cuda") -> str:
    """Which table runs kernel ``op`` on ``device`` ('kiln._cpu', 'kiln._cuda' or
    'kiln.backends.numba_cuda'); raises if ``op`` is not a kernel of that table."""
    name = table_name(device)
    mod = table(device)
    if not callable(getattr(mod, op, None)):
        raise ValueError(f"which: {op!r} is not a kernel of {name}")
    return name
