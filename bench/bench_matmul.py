"""GEMM throughput: kiln vs NumPy (OpenBLAS) vs PyTorch CPU, float32, 1 and 2 threads.

Measured, per shape (M×K · K×N), alternating in one process (see _harness.py):
  kiln         kiln.matmul on Tensors (Python op layer + output allocation + kernel)
  kiln kernel  kiln._cpu.matmul(a, b, out, False, False, None, "none"), out preallocated
  numpy        numpy.matmul(a, b)
  torch        torch.matmul(a, b)
Shapes: squares 64..2048 (4096 with --big) and the batch-128 MLP Linear products
128×784·784×256, 128×256·256×128, 128×128·128×10. GFLOP/s = 2·M·N·K / median time;
% of peak uses bench/peak.py's FMA peak for the same thread count. Also, at 512³ and 1
thread, kiln._cpu.matmul_naive (triple loop) against the kernel: the foundation issue
asks for a speedup >= 20×. Each result is checked against NumPy (max relative error).

    python bench/bench_matmul.py [--quick] [--big] [--threads 1,2]
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as H
import peak as P

SQUARES = [64, 128, 256, 512, 1024, 2048]
MLP = [(128, 784, 256), (128, 256, 128), (128, 128, 10)]
NAMES = ["kiln", "kiln kernel", "numpy", "torch"]


def _budget(flops: float, quick: bool) -> tuple[float, int]:
    if quick:
        return 0.25, 3
    return (6.0, 5) if flops > 5e9 else (4.0, 7) if flops > 1e9 else (2.0, 9)


def _case(name, m, k, n, quick, rng):
    import numpy as np
    import torch

    import kiln
    from kiln import _cpu

    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    out = np.empty((m, n), np.float32)
    ka, kb = kiln.from_numpy(a), kiln.from_numpy(b)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    fns = {
        "kiln": lambda: kiln.matmul(ka, kb),
        "kiln kernel": lambda: _cpu.matmul(a, b, out, False, False, None, "none"),
        "numpy": lambda: np.matmul(a, b),
        "torch": lambda: torch.matmul(ta, tb),
    }
    flops = 2.0 * m * n * k
    budget, mins = _budget(flops, quick)
    res = H.measure(fns, budget_s=budget, min_samples=mins, max_samples=500)
    ref = a.astype(np.float64) @ b.astype(np.float64)
    err = None
    with contextlib.suppress(*H.KERNEL_ERRORS):
        got = kiln.matmul(ka, kb).numpy()
        err = float(np.abs(got - ref).max() / max(np.abs(ref).max(), 1e-30))
    return {"name": name, "shape": [m, k, n], "flops": flops, "res": res, "max_rel_err": err}


def _naive(quick, rng) -> dict:
    import numpy as np

    from kiln import _cpu

    s = 512
    a = rng.standard_normal((s, s), dtype=np.float32)
    b = rng.standard_normal((s, s), dtype=np.float32)
    o1, o2 = np.empty((s, s), np.float32), np.empty((s, s), np.float32)
    fns = {"kiln kernel": lambda: _cpu.matmul(a, b, o1, False, False, None, "none"),
           "naive": lambda: _cpu.matmul_naive(a, b, o2)}
    res = H.measure(fns, budget_s=0.5 if quick else 3.0, min_samples=3, warmup=1)
    return {"name": "matmul_naive 512³", "shape": [s, s, s], "flops": 2.0 * s**3, "res": res,
            "speedup": H.ratio(res, "naive", "kiln kernel")}


def child(n: int, quick: bool, big: bool) -> dict:
    import numpy as np

    meta = H.setup_child(n)
    rng = np.random.default_rng(0)
    sizes = SQUARES[:4] if quick else SQUARES + ([4096] if big else [])
    cases = []
    for s in sizes:
        H.log(f"  matmul {s}³, {n} thread(s)")
        cases.append(_case(f"{s}³", s, s, s, quick, rng))
    for m, k, nn in MLP:
        H.log(f"  matmul {m}×{k}·{k}×{nn}, {n} thread(s)")
        cases.append(_case(f"MLP {m}×{k}·{k}×{nn}", m, k, nn, quick, rng))
    naive = _naive(quick, rng) if n == 1 else None
    return {"threads": n, "meta": meta, "cases": cases, "naive": naive}


def run(quick: bool = False, big: bool = False, threads=(1, 2)) -> dict:
    peak = P.load(quick=quick)
    args = (["--quick"] if quick else []) + (["--big"] if big else [])
    runs = H.run_per_thread(__file__, list(threads), args)
    payload = {"bench": "matmul", "machine": H.machine(), "peak": peak, "ratio": H.RATIO_NOTE,
               "runs": runs}
    H.save("matmul", payload)
    return payload


def _gf(case, name):
    r = case["res"].get(name, {})
    return (case["flops"] / r["median_s"] * 1e-9) if "median_s" in r else None


def markdown(payload: dict) -> str:
    peak = payload["peak"]
    rows = []
    for run in payload["runs"]:
        n = run["threads"]
        pk = P.peak_gflops(peak, n)
        for c in run["cases"]:
            gk = _gf(c, "kiln")
            best = c["res"].get("kiln", {}).get("min_s")
            rows.append([
                c["name"], str(n),
                H.fmt(gk) + (f" ({H.fmt(c['flops'] / best * 1e-9)})" if best else ""),
                H.fmt(gk / pk * 100 if gk and pk else None, 0, "%"),
                H.fmt(_gf(c, "kiln kernel")), H.fmt(_gf(c, "numpy")), H.fmt(_gf(c, "torch")),
                H.ratio2(c["res"], "numpy"), H.ratio2(c["res"], "torch"),
                "—" if c["max_rel_err"] is None else f"{c['max_rel_err']:.0e}",
                H.fmt(c["res"].get("_other"), 2),
            ])
    hdr = ["shape", "thr", "kiln GFLOP/s (best)", "% peak", "kiln kernel", "NumPy", "PyTorch",
           "kiln vs NumPy", "kiln vs torch", "rel err", "other"]
    out = [("GFLOP/s from medians (kiln's best sample in parentheses); "
            f"{payload['ratio']}, on medians (on best samples); % peak against the FMA peak "
            "for the same thread count."), "",
           H.md_table(hdr, rows)]
    for run in payload["runs"]:
        nv = run.get("naive")
        if nv:
            r = nv["res"]
            sp = nv["speedup"]
            verdict = "—" if sp is None else ("met" if sp >= 20 else "NOT met")
            tn = r.get("naive", {}).get("median_s")
            tk = r.get("kiln kernel", {}).get("median_s")
            out.append(
                f"\n`matmul_naive` at 512³, 1 thread: {H.fmt(tn and tn * 1e3, 0)} ms "
                f"({H.fmt(tn and nv['flops'] / tn * 1e-9, 2)} GFLOP/s) vs kiln's kernel "
                f"{H.fmt(tk and tk * 1e3, 2)} ms: **{H.fmt(sp, 0)}× faster** "
                f"(target ≥ 20×: {verdict}).")
    out.append(H.missing_note(payload["runs"]))
    return "\n".join(out)


def main(argv=None) -> int:
    return H.main(__doc__, child, run, markdown, "small sizes, short budgets (< 30 s)", argv,
                  flags={"big": "add 4096³"})


if __name__ == "__main__":
    sys.exit(main())
