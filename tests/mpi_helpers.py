"""Launch small worker scripts (tests/mpi_workers/) under ``mpirun`` for the distributed
tests; skip, with the reason, when Open MPI's launcher or mpi4py is missing."""

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import kiln

WORKERS = Path(__file__).parent / "mpi_workers"
TIMEOUT = 120  # seconds per launch: a hung job fails the test instead of the CI run


def need_mpi() -> None:
    if shutil.which("mpirun") is None:
        pytest.skip("mpirun (Open MPI) is not installed")
    if importlib.util.find_spec("mpi4py") is None:
        pytest.skip("mpi4py is not installed (kiln[distributed])")


def mpi_env() -> dict:
    env = dict(os.environ)
    pkg_root = str(Path(kiln.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([pkg_root, str(WORKERS)] + (
        [env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # CI containers run as root
        env["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
        env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
    env["OMP_NUM_THREADS"] = "1"  # ranks share the cores; no OpenMP oversubscription
    return env


def mpirun(n: int, script: str, *args, timeout: float = TIMEOUT,
           check: bool = True) -> subprocess.CompletedProcess:
    """Run ``tests/mpi_workers/<script>`` on ``n`` ranks (oversubscribed: CI has 2 cores)."""
    need_mpi()
    cmd = ["mpirun", "-n", str(n), "--oversubscribe", sys.executable,
           str(WORKERS / script), *map(str, args)]
    try:
        res = subprocess.run(cmd, env=mpi_env(), capture_output=True, text=True,
                             timeout=timeout)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{' '.join(cmd)} did not finish within {timeout} s\n"
                    f"stdout: {e.stdout}\nstderr: {e.stderr}")
    if check and res.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} exited with {res.returncode}\nstdout:\n{res.stdout}\n"
                    f"stderr:\n{res.stderr}")
    return res
