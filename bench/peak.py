"""Measure this machine's fp32 peak (GFLOP/s) with a compiled FMA-throughput probe.

How: ``fma_probe.c`` (12 independent FMA chains on full-width vectors, OpenMP) is compiled
on the fly with ``cc -O2 -mavx512f -mfma -fopenmp`` (AVX2 + FMA if the CPU has no
AVX-512) into a temporary directory and run with OMP_NUM_THREADS = 1 and 2, several short
trials each. The peak is the best rate over each thread's own CPU time (the hardware rate
while it held a core: other processes on a shared machine cannot lower it); the best
wall-clock rate, which they can, is recorded next to it. The result is cached in
``bench/results/peak.json``; ``--force`` measures again.

    python bench/peak.py [--force] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("KILN_BENCH_RESULTS", HERE / "results")) / "peak.json"


def _cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _compile(tmp: Path) -> tuple[Path, str]:
    flags = _cpu_flags()
    isa_flags = ["-mavx512f", "-mfma"] if "avx512f" in flags else ["-mavx2", "-mfma"]
    exe = tmp / "fma_probe"
    cc = os.environ.get("CC", "cc")
    cmd = [cc, "-O2", *isa_flags, "-fopenmp", str(HERE / "fma_probe.c"), "-o", str(exe)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return exe, " ".join(cmd[:-3])


def _trial(exe: Path, threads: int, iters: int) -> tuple[str, float, float]:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OMP_PROC_BIND="false")
    out = subprocess.run([str(exe), str(iters)], env=env, check=True, capture_output=True,
                         text=True).stdout.split()
    return out[0], float(out[2]), float(out[3])


def measure(trials: int = 12, iters: int = 3_000_000, threads=(1, 2)) -> dict:
    """Run the probe; returns {"isa", "compile", "threads": {"1": {...}, "2": {...}}}."""
    with tempfile.TemporaryDirectory(prefix="kiln-peak-") as tmp:
        exe, compile_cmd = _compile(Path(tmp))
        res = {"isa": None, "compile": compile_cmd, "threads": {},
               "date": time.strftime("%Y-%m-%d %H:%M:%S"), "loadavg": os.getloadavg()}
        for n in threads:
            walls, cpus = [], []
            for _ in range(trials):
                isa, wall, cpu = _trial(exe, n, iters)
                walls.append(wall)
                cpus.append(cpu)
            res["isa"] = isa
            cpus.sort()
            res["threads"][str(n)] = {
                "gflops": max(cpus),                       # the peak used for "% of peak"
                "gflops_cpu_median": cpus[len(cpus) // 2],
                "gflops_wall_best": max(walls),
                "trials": trials,
            }
    return res


_LIB = {}


def in_process():
    """The probe compiled as a shared library and loaded into this process: returns
    run(iters) -> FLOPs done on the current OpenMP thread count (None without a compiler).
    bench_matmul times it alternately with the GEMMs, so its rate is what the cores gave
    in the same rounds."""
    if "run" not in _LIB:
        import ctypes

        try:
            tmp = Path(tempfile.mkdtemp(prefix="kiln-peak-lib-"))
            flags = _cpu_flags()
            isa_flags = ["-mavx512f", "-mfma"] if "avx512f" in flags else ["-mavx2", "-mfma"]
            lib = tmp / "fma_probe.so"
            subprocess.run([os.environ.get("CC", "cc"), "-O2", *isa_flags, "-fopenmp", "-shared",
                            "-fPIC", "-DFMA_PROBE_LIB", str(HERE / "fma_probe.c"), "-o",
                            str(lib)], check=True, capture_output=True, text=True)
            fn = ctypes.CDLL(str(lib)).fma_probe_run
            fn.argtypes, fn.restype = [ctypes.c_long], ctypes.c_double
            _LIB["run"] = fn
        except (OSError, subprocess.CalledProcessError):
            _LIB["run"] = None
    return _LIB["run"]


def load(force: bool = False, quick: bool = False) -> dict:
    """The cached peak, measured first if missing (or when ``force``)."""
    if CACHE.exists() and not force:
        return json.loads(CACHE.read_text())
    try:
        res = measure(trials=4 if quick else 12)
    except (OSError, subprocess.CalledProcessError) as e:  # no compiler: report, don't crash
        return {"isa": None, "error": str(e), "threads": {}}
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    CACHE.write_text(json.dumps(res, indent=2))
    return res


def peak_gflops(peak: dict, threads: int) -> float | None:
    t = peak.get("threads", {}).get(str(threads))
    return t["gflops"] if t else None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--force", action="store_true", help="measure again, ignore the cache")
    p.add_argument("--quick", action="store_true", help="fewer trials")
    a = p.parse_args(argv)
    res = load(force=a.force, quick=a.quick)
    if "error" in res:
        print(f"peak probe failed: {res['error']}", file=sys.stderr)
        return 1
    print(f"fp32 FMA peak ({res['isa']}, {res['compile']}):")
    for n, r in res["threads"].items():
        print(f"  {n} thread(s): {r['gflops']:8.1f} GFLOP/s (per CPU-second; median "
              f"{r['gflops_cpu_median']:.1f}), best wall-clock {r['gflops_wall_best']:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
