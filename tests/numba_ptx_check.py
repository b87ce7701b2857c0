"""Record the Numba CUDA kernel launches of the simulator tests, then compile them to PTX.

Used by tests/test_numba_ptx.py in two subprocesses (see its header for the design):

1. ``pytest -p numba_ptx_check tests/test_numba_<family>.py ...`` with ``KILN_PTX_RECORD=<file>``
   and ``NUMBA_ENABLE_CUDASIM=1``: the plugin below wraps the simulator's kernel launch
   (``FakeCUDAKernel.__call__``), turns each argument into the Numba type a real launch
   would see (``numba.typeof``: a simulator device array has ``_numba_type_`` like a real
   one; Python and NumPy scalars type as on a GPU) and records
   (module, kernel, signature, first test that launched it). By default the kernel body is
   NOT run (``KILN_PTX_RECORD_RUN=1`` runs it) and NumPy's assert functions are no-ops, so a
   test goes on launching after a kernel whose outputs were never written: recording the
   whole simulator suite takes seconds instead of minutes, the tests' verdicts are ignored.
2. ``python tests/numba_ptx_check.py <records> <report.json>`` WITHOUT the simulator: with a
   few patches of numba-cuda internals (compute capability forced to 9.0, the toolkit's
   libNVVM and libdevice, no NVRTC, which only serves to list architectures) every recorded
   (kernel, signature) is compiled for real with ``cuda.compile_ptx(..., cc=(9, 0))``; the
   report lists compile errors, the float64 instructions of each float32 variant, and the
   kernels of the package that no test launched. When the toolkit or the patch points are
   missing the report says ``{"skip": reason}`` instead.
"""

from __future__ import annotations

import glob
import json
import os
import pickle
import re
import sys
import time
import types

RECORD_ENV = "KILN_PTX_RECORD"
PACKAGE = "kiln.backends.numba_cuda"

# ---------------------------------------------------------------- 1. recording (pytest plugin)

_records: dict = {}  # (module, qualname, signature) -> nodeid of the first launch
_skip: str | None = None  # why launches could not be recorded


def _numba_type(a):
    from numba import typeof, types
    from numba.core.typing.typeof import Purpose

    t = typeof(a, Purpose.argument)
    if isinstance(t, types.Array):  # a real launch types device arrays mutable and aligned
        t = types.Array(t.dtype, t.ndim, t.layout)
    return t


def pytest_configure(config):
    if not os.environ.get(RECORD_ENV):
        return
    global _skip
    try:
        from numba import config as numba_config

        if not numba_config.ENABLE_CUDASIM:
            raise RuntimeError(f"{RECORD_ENV} needs NUMBA_ENABLE_CUDASIM=1 before numba loads")
        from numba.cuda.simulator import kernel as sim

        launch = sim.FakeCUDAKernel.__call__
        sim._get_kernel_context  # noqa: B018 (the patch below needs it)
    except Exception as e:  # another numba(-cuda) whose simulator is laid out differently
        _skip = f"cannot hook the CUDA simulator's kernel launch: {type(e).__name__}: {e}"
        return
    run = os.environ.get("KILN_PTX_RECORD_RUN") == "1"

    def recording_call(self, *args):
        if getattr(self, "_device", False) or sim._get_kernel_context() is not None:
            return launch(self, *args)  # a device function, called from inside a kernel
        fn = self.fn
        if not fn.__module__.startswith(PACKAGE + "."):
            return launch(self, *args)  # a test's own kernel
        key = (fn.__module__, fn.__qualname__, tuple(_numba_type(a) for a in args))
        _records.setdefault(key, os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0])
        return launch(self, *args) if run else None

    sim.FakeCUDAKernel.__call__ = recording_call
    if not run:  # outputs are never written: let the tests run on to their next launch
        import numpy.testing as npt

        for name in ("assert_allclose", "assert_array_equal", "assert_equal",
                     "assert_array_almost_equal", "assert_almost_equal"):
            setattr(npt, name, lambda *a, **k: None)


def pytest_unconfigure(config):
    path = os.environ.get(RECORD_ENV)
    if path:
        with open(path, "wb") as f:
            pickle.dump({"skip": _skip} if _skip else
                        [(m, q, sig, node) for (m, q, sig), node in _records.items()], f)


# ---------------------------------------------------------------- 2. compiling (no simulator)

def find_toolkit() -> tuple[str, str] | str:
    """(CUDA home, libdevice path) of a toolkit with libNVVM, or the reason there is none."""
    homes = [os.environ.get(v) for v in ("CUDA_HOME", "CUDA_PATH")]
    homes += ["/usr/local/cuda"] + sorted(glob.glob("/usr/local/cuda-*"), reverse=True)
    for home in filter(None, homes):
        libdevice = os.path.join(home, "nvvm", "libdevice", "libdevice.10.bc")
        nvvm = [p for d in ("nvvm/lib64", "nvvm/lib", "lib64", "lib", "targets/*/lib")
                for p in glob.glob(os.path.join(home, d, "libnvvm.so*"))]
        if nvvm and os.path.exists(libdevice):
            return home, libdevice
    return "no CUDA toolkit with libnvvm.so and nvvm/libdevice/libdevice.10.bc " \
           "(looked in $CUDA_HOME, $CUDA_PATH, /usr/local/cuda*)"


def setup_compiler(home: str) -> str | None:
    """Patch numba-cuda to compile for sm_90 without a GPU or NVRTC; the reason if it can't."""
    os.environ["NUMBA_ENABLE_CUDASIM"] = "0"
    os.environ["NUMBA_FORCE_CUDA_CC"] = "9.0"  # nvrtc.get_arch_option would ask NVRTC otherwise
    os.environ["CUDA_HOME"] = home
    try:
        from numba import config
        from numba.cuda import cuda_paths

        if config.ENABLE_CUDASIM:
            return "numba was imported with the CUDA simulator enabled"
        # get_cuda_paths() looks NVRTC up first and raises when it is absent; PTX needs only NVVM
        if not hasattr(cuda_paths, "_get_nvrtc_path"):
            return "numba-cuda has no cuda_paths._get_nvrtc_path to patch (another version?)"
        cuda_paths._get_nvrtc_path = lambda: cuda_paths._env_path_tuple("unused", None)
        from numba.cuda import dispatcher
        from numba.cuda.cudadrv import nvvm

        # a kernel calling a @cuda.jit(device=True) function compiles it for the current
        # device's compute capability: a stand-in device of cc 9.0 (no driver is touched)
        if not hasattr(dispatcher, "get_current_device"):
            return "numba-cuda has no dispatcher.get_current_device to patch (another version?)"
        dispatcher.get_current_device = lambda: types.SimpleNamespace(compute_capability=(9, 0))
        nvvm.NVVM()  # loads libNVVM
        cuda_paths.get_cuda_paths.__dict__.pop("_cached_result", None)
        if not os.path.exists(cuda_paths.get_cuda_paths()["libdevice"].info or ""):
            return "numba-cuda does not find libdevice"
    except Exception as e:  # a numba-cuda whose internals moved, or a broken libNVVM
        return f"cannot set numba-cuda up for PTX compilation: {type(e).__name__}: {e}"
    return None


# PTX instructions on float64 values, loads/stores/moves aside (a float64 argument alone is
# not maths); conversions count: cvt.f64.f32 is a promotion, cvt.rn.f32.f64 a demotion.
_F64_OP = re.compile(r"^\s*(?!ld\.|st\.|mov\.)([a-z][\w.]*\.f64\b[\w.]*)")


def float64_ops(ptx: str) -> dict[str, int]:
    ops: dict[str, int] = {}
    for line in ptx.splitlines():
        m = _F64_OP.match(line)
        if m:
            ops[m.group(1)] = ops.get(m.group(1), 0) + 1
    return ops


def _kernels_in_package():
    """(module, qualname) of every non-device @cuda.jit kernel defined in the package."""
    import importlib
    import pkgutil

    from numba.cuda.dispatcher import CUDADispatcher

    pkg = importlib.import_module(PACKAGE)
    found = set()
    for info in pkgutil.iter_modules(pkg.__path__, PACKAGE + "."):
        mod = importlib.import_module(info.name)
        for obj in vars(mod).values():
            if (isinstance(obj, CUDADispatcher) and not obj.targetoptions.get("device")
                    and obj.py_func.__module__ == info.name):
                found.add((info.name, obj.py_func.__qualname__))
    return found


def compile_all(records_path: str, report_path: str) -> None:
    toolkit = find_toolkit()
    reason = toolkit if isinstance(toolkit, str) else setup_compiler(toolkit[0])
    if reason:
        with open(report_path, "w") as f:
            json.dump({"skip": reason}, f)
        return
    import importlib

    from numba import cuda, types

    with open(records_path, "rb") as f:
        records = pickle.load(f)
    if isinstance(records, dict):  # the recording plugin could not hook the simulator
        with open(report_path, "w") as f:
            json.dump(records, f)
        return
    results = []
    t0 = time.perf_counter()
    for module, qualname, sig, node in sorted(records, key=lambda r: (r[0], r[1], str(r[2]))):
        entry = {"module": module, "kernel": qualname, "signature": str(sig), "test": node}
        dtypes = {getattr(t, "dtype", t) for t in sig}
        entry["float32"] = types.float32 in dtypes
        try:
            kernel = importlib.import_module(module)
            for part in qualname.split("."):
                kernel = getattr(kernel, part)  # '<locals>' (a kernel made by a factory) fails here
            ptx, _ = cuda.compile_ptx(kernel.py_func, sig, cc=(9, 0),
                                      fastmath=bool(kernel.targetoptions.get("fastmath")))
            entry["float64_ops"] = float64_ops(ptx)
        except Exception as e:
            entry["error"] = f"{type(e).__name__}: {e}"
        results.append(entry)
    launched = {(m, q) for m, q, _, _ in records}
    report = {"results": results, "seconds": time.perf_counter() - t0,
              "never_launched": sorted(map(list, _kernels_in_package() - launched))}
    with open(report_path, "w") as f:
        json.dump(report, f, indent=1)


if __name__ == "__main__":
    compile_all(sys.argv[1], sys.argv[2])
