"""Shared benchmark harness: alternating timing, thread settings per subprocess, tables.

Timing: the contenders of one case (kiln, NumPy, PyTorch...) run *alternately* in one
process -- each round times every contender once, the starting one rotating from round
to round -- so a slow phase of a shared machine hits them all alike. Each contender is
first warmed up (and run once as a check: one that raises, e.g. a kernel that is "not yet
implemented", is reported as missing with its error instead of stopping the bench), then
calibrated on the best of 3 batches of >= 1 ms: a sample is ``inner`` back-to-back calls,
``inner`` chosen so that a sample lasts about ``sample_s``. Rounds continue until the time budget
is spent (at least ``min_samples``, at most ``max_samples``). Reported per contender:
median and min seconds per call, and for the case the number of cores other processes
kept busy meanwhile (a noise indicator).

Threads: every thread count runs in its own subprocess whose environment sets
OMP_NUM_THREADS / OPENBLAS_NUM_THREADS / MKL_NUM_THREADS before NumPy is imported
(threadpoolctl is not needed) and OPENBLAS_THREAD_TIMEOUT=4 (idle OpenBLAS threads stop
spinning instead of taking a core from the next contender); the child also calls
``kiln.set_num_threads`` and ``torch.set_num_threads``. Ratio convention everywhere:
ratio = t_reference / t_kiln, so a ratio > 1 means kiln is faster.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
# JSON results next to the scripts, or where KILN_BENCH_RESULTS says (an installed copy)
RESULTS = Path(os.environ.get("KILN_BENCH_RESULTS", HERE / "results"))
# what a missing or broken kiln kernel raises; a correctness check that hits one is skipped
KERNEL_ERRORS = (RuntimeError, ValueError, TypeError, NotImplementedError, AttributeError)
RATIO_NOTE = "ratio = t_reference / t_kiln (> 1: kiln is faster)"
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "NUMEXPR_NUM_THREADS")


# ---- threads: one subprocess per setting --------------------------------------------
def run_per_thread(script: str, threads: list[int], args: list[str]) -> list[dict]:
    """Run ``script --child N args`` once per thread count N; each child prints one JSON
    line (the last line of its stdout). Returns the children's results in order."""
    out = []
    for n in threads:
        env = dict(os.environ, **{v: str(n) for v in THREAD_VARS})
        # Idle OpenBLAS threads spin for a while after each call and, when contenders
        # alternate, take a core from the next one; a short timeout makes them sleep.
        env.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
        src = HERE.parent / "python"
        if any((src / "kiln").glob("_cpu*.so")):  # a source tree with built modules
            env["PYTHONPATH"] = os.pathsep.join(p for p in (str(src), env.get("PYTHONPATH")) if p)
        cmd = [sys.executable, script, "--child", str(n), *args]
        proc = subprocess.run(cmd, check=False, env=env, stdout=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{Path(script).name} --child {n} failed ({proc.returncode})")
        out.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return out


def setup_child(n: int) -> dict:
    """In a child process: set every library to ``n`` threads; return versions."""
    import numpy as np
    import torch

    import kiln

    kiln.set_num_threads(n)
    torch.set_num_threads(n)
    return {"threads": n, "loadavg_start": list(os.getloadavg()),
            "kiln_threads": kiln.get_num_threads(),
            "torch_threads": torch.get_num_threads(), "numpy": np.__version__,
            "torch": torch.__version__, "kiln": kiln.__version__,
            "kiln_isa": kiln.info()["cpu"]["isa"],
            "kiln_isa_supported": kiln.info()["cpu"]["isa_supported"]}


def emit(result: dict) -> None:
    """A child's result: one JSON line on stdout (progress goes to stderr)."""
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---- timing -------------------------------------------------------------------------
def _cpu_snapshot() -> tuple[float, float, float]:
    """(machine busy CPU-seconds, this process's CPU-seconds, wall seconds)."""
    busy = 0.0
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        busy = (sum(v) - v[3] - (v[4] if len(v) > 4 else 0)) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        pass
    t = os.times()
    return busy, t.user + t.system, time.perf_counter()


def foreign_load(s0, s1) -> float:
    """Average number of cores other processes kept busy between two snapshots: the
    noise indicator printed as "other" in the tables (0 = quiet machine)."""
    wall = s1[2] - s0[2]
    return max(0.0, ((s1[0] - s0[0]) - (s1[1] - s0[1])) / wall) if wall > 0 else 0.0


def _sample(fn: Callable[[], object], inner: int) -> float:
    t0 = time.perf_counter()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - t0) / inner


def measure(contenders: dict[str, Callable[[], object]], budget_s: float = 2.0,
            min_samples: int = 5, max_samples: int = 200, sample_s: float = 2e-3,
            warmup: int = 2) -> dict[str, dict]:
    """Time the contenders alternately; returns {name: {median_s, min_s, n, inner}} or
    {name: {error}} for a contender that raised, plus "_other": the foreign load."""
    res: dict[str, dict] = {}
    s0 = _cpu_snapshot()
    live: dict[str, tuple[Callable, int]] = {}
    for name, fn in contenders.items():
        try:
            for _ in range(warmup):
                fn()
            k = 1
            while True:  # calibrate on the best of 3 batches of >= 1 ms, not one noisy call
                t = min(_sample(fn, k) for _ in range(3))
                if t * k >= 1e-3 or k >= 100_000:
                    break
                k *= 4
        except Exception as e:  # noqa: BLE001  (a missing kernel is a result, not a crash)
            res[name] = {"error": f"{type(e).__name__}: {e}".splitlines()[0][:160]}
            continue
        live[name] = (fn, max(1, min(100_000, int(sample_s / max(t, 1e-9)))))
    samples: dict[str, list[float]] = {n: [] for n in live}
    t_end = time.perf_counter() + budget_s
    order = list(live)
    for r in range(max_samples):
        k = r % len(order) if order else 0  # rotate who goes first: no fixed position bias
        for name in order[k:] + order[:k]:
            fn, inner = live[name]
            samples[name].append(_sample(fn, inner))
        if r + 1 >= min_samples and time.perf_counter() > t_end:
            break
    for name, (_, inner) in live.items():
        s = sorted(samples[name])
        res[name] = {"median_s": s[len(s) // 2], "min_s": s[0], "n": len(s), "inner": inner}
    res["_other"] = foreign_load(s0, _cpu_snapshot())
    return res


def ratio(res: dict[str, dict], ref: str, kiln: str = "kiln",
          stat: str = "median_s") -> float | None:
    """t_ref / t_kiln on medians, or on best samples with stat="min_s" (> 1: kiln faster);
    None if either is missing."""
    a, b = res.get(ref, {}), res.get(kiln, {})
    if stat not in a or stat not in b:
        return None
    return a[stat] / b[stat]


def ratio2(res: dict[str, dict], ref: str, kiln: str = "kiln") -> str:
    """"median ratio (best-sample ratio)" for a table cell."""
    m = ratio(res, ref, kiln)
    return "—" if m is None else f"{m:.2f}× ({ratio(res, ref, kiln, 'min_s'):.2f}×)"


# ---- formatting ---------------------------------------------------------------------
def fmt(x: float | None, digits: int = 1, suffix: str = "") -> str:
    if x is None:
        return "—"
    if abs(x) >= 1000:
        return f"{x:,.0f}{suffix}"
    return f"{x:.{digits}f}{suffix}"


def fmt_ratio(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f}×"


def md_table(headers: list[str], rows: list[list[str]]) -> str:
    align = ["---"] + ["--:"] * (len(headers) - 1)
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def missing_note(results: list[dict]) -> str:
    """'missing' lines for every contender that raised, once per (case, name)."""
    seen = {}
    for run in results:
        for case in run["cases"]:
            for name, r in case["res"].items():
                if isinstance(r, dict) and "error" in r:
                    seen.setdefault(f"{case['name']} / {name}", r["error"])
    if not seen:
        return ""
    items = "\n".join(f"- {k}: `{v}`" for k, v in sorted(seen.items()))
    return f"\nMissing (raised, reported as —):\n\n{items}\n"


def save(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2))
    return path


def machine() -> dict:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(), "python": platform.python_version(),
            "os": platform.platform(), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "loadavg": [round(x, 2) for x in os.getloadavg()]}


def threads_arg(s: str) -> list[int]:
    return [int(t) for t in s.split(",") if t]


def main(doc: str, child: Callable, run: Callable, markdown: Callable, quick_help: str,
         argv=None, flags: dict[str, str] | None = None) -> int:
    """The command line every bench script shares: ``[--quick] [--threads 1,2]`` plus
    extra boolean ``flags`` (name -> help), passed to ``child``/``run`` after ``quick``."""
    import argparse

    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--quick", action="store_true", help=quick_help)
    for name, help_ in (flags or {}).items():
        p.add_argument(f"--{name}", action="store_true", help=help_)
    p.add_argument("--threads", type=threads_arg, default=[1, 2])
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    extra = [getattr(a, name) for name in (flags or {})]
    if a.child:
        emit(child(a.child, a.quick, *extra))
        return 0
    print(markdown(run(a.quick, *extra, a.threads)))
    return 0
