"""Every @cuda.jit kernel of the Numba CUDA table, compiled to sm_90 PTX for real.

The simulator tests (tests/test_numba_*.py) run kernels as Python, which accepts code a GPU
compile rejects (non-constant shared-array shapes, wrong argument types to intrinsics,
untyped variables) and hides float64 maths in float32 kernels. This test compiles, without
a GPU, each kernel with the argument types it is really launched with:

1. Recording (subprocess, ~5 s): the simulator tests run with tests/numba_ptx_check.py as a
   pytest plugin that wraps the simulator's launch (FakeCUDAKernel.__call__) and records
   (module, kernel, Numba signature) of every launch of a kernel of kiln.backends.numba_cuda.
   Kernel bodies are not executed and NumPy's assertions are no-ops there, so the whole
   simulator suite is replayed in seconds (its verdicts are ignored: the main session judges
   them) and a new kernel or a new dtype/flag combination is covered as soon as a simulator
   test launches it: there is no signature list to maintain. A subprocess, rather than
   recording inside the main session, keeps the result independent of test order, -k
   selections and xdist.
2. Compiling (subprocess without the simulator, ~20-40 s): numba_ptx_check.py patches numba-cuda
   just enough (cc 9.0 forced, libNVVM/libdevice of the CUDA toolkit, no NVRTC, a stand-in
   device for device-function compiles) and runs cuda.compile_ptx(kernel.py_func, sig,
   cc=(9, 0)) on every record.

The test fails on: a compile error; a kernel of the package that no simulator test launches
(it could not be checked); a float64 instruction (arithmetic, comparison or conversion) in
the PTX of a signature with float32 arguments, unless the kernel is in FLOAT64_OK below. It
skips (never fails) when numba, the CUDA toolkit (libNVVM, libdevice) or the numba-cuda
internals it patches are missing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("numba", reason="numba is not installed (pip install 'kiln[numba]')")

import numba_ptx_check  # noqa: E402

TESTS = Path(__file__).resolve().parent
M = "kiln.backends.numba_cuda."

# Kernels whose float32 variants compute in float64 on purpose (each module's header says
# so): reductions accumulated in float64 as on the CPU, for accuracy and determinism.
FLOAT64_OK = {
    # softmax/log_softmax: row/column sums in float64
    (M + "softmax", "_rows_forward"), (M + "softmax", "_rows_backward"),
    (M + "softmax", "_cols_forward"), (M + "softmax", "_cols_backward"),
    # cross entropy / nll: float64 row sums and a float64 scratch for the mean/sum reduction
    (M + "loss", "_forward_rows"), (M + "loss", "_backward_rows"), (M + "loss", "_reduce_loss"),
    (M + "loss", "_weight_stats"), (M + "loss", "_copy_rows"),
    # layer/group/batch norm: float64 partial sums (two-pass mean/var like the CPU)
    (M + "norm", "_row_norm"), (M + "norm", "_ln_bwd_gx"), (M + "norm", "_ln_bwd_wb"),
    (M + "norm", "_gn_bwd_sums"), (M + "norm", "_gn_bwd_gx"), (M + "norm", "_gn_bwd_wb"),
    (M + "norm_batch", "_bn_fwd"), (M + "norm_batch", "_bn_bwd"),
    # embedding_renorm_: the row p-norm in float64, as on the CPU
    (M + "embedding", "_renorm_rows"),
    # grad_norm in float64; Adam/Adagrad step scalars in Python-float (float64) arithmetic,
    # one thread per tensor, like PyTorch's _single_tensor_* step
    (M + "optim", "_norm_partial"), (M + "optim", "_bump_adam"), (M + "optim", "_bump_adagrad"),
}



def _run(cmd, env, timeout):
    return subprocess.run(cmd, cwd=TESTS.parent, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_every_numba_kernel_compiles_to_ptx(tmp_path):
    if os.environ.get(numba_ptx_check.RECORD_ENV):
        pytest.skip("inside the recording run")
    toolkit = numba_ptx_check.find_toolkit()
    if isinstance(toolkit, str):
        pytest.skip(toolkit)
    import kiln

    path = [str(TESTS), str(Path(kiln.__file__).resolve().parent.parent)]
    path += [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path))

    # 1. record every kernel launch of the simulator tests
    records = tmp_path / "launches.pkl"
    files = sorted(str(p.relative_to(TESTS.parent)) for p in TESTS.glob("test_numba_*.py")
                   if p.name != Path(__file__).name)
    rec = _run([sys.executable, "-m", "pytest", "-q", "-p", "numba_ptx_check",
                "-p", "no:cacheprovider", *files],
               dict(env, NUMBA_ENABLE_CUDASIM="1", **{numba_ptx_check.RECORD_ENV: str(records)}),
               timeout=600)
    # exit code 1 = some replayed tests failed, expected when kernels are not executed
    assert rec.returncode in (0, 1) and records.exists(), \
        f"recording run failed (exit {rec.returncode}):\n{rec.stdout[-3000:]}\n{rec.stderr[-3000:]}"

    # 2. compile every (kernel, signature) without the simulator
    report = tmp_path / "report.json"
    env = {k: v for k, v in env.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env["NUMBA_CACHE_DIR"] = str(tmp_path / "numba_cache")  # never touch the source tree's cache
    comp = _run([sys.executable, str(TESTS / "numba_ptx_check.py"), str(records), str(report)],
                env, timeout=600)
    assert comp.returncode == 0 and report.exists(), \
        f"PTX compile run crashed (exit {comp.returncode}):\n{comp.stderr[-4000:]}"
    rep = json.loads(report.read_text())
    if "skip" in rep:
        pytest.skip(rep["skip"])

    results = rep["results"]
    problems = []
    for r in results:
        where = f"{r['module']}.{r['kernel']}{r['signature']} (launched by {r['test']})"
        key = (r["module"], r["kernel"])
        if "error" in r:
            problems.append(f"compile error in {where}:\n    {r['error'][:2000]}")
        elif r["float32"] and r["float64_ops"] and key not in FLOAT64_OK:
            problems.append(f"float64 instructions in float32 {where}: {r['float64_ops']}")
    for module, kernel in rep["never_launched"]:
        problems.append(f"{module}.{kernel} is never launched by a simulator test "
                        "(tests/test_numba_*.py), so its PTX could not be checked")
    kernels = {(r["module"], r["kernel"]) for r in results}
    print(f"PTX: {len(results)} signatures of {len(kernels)} kernels compiled in "
          f"{rep['seconds']:.1f} s")
    assert not problems, "\n".join(problems)
    assert len(kernels) >= 20, "suspiciously few kernels recorded"
