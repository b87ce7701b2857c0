"""GEMM throughput: kiln vs NumPy (OpenBLAS) vs PyTorch CPU, float32, 1 and 2 threads.

Measured, per shape (M×K · K×N), alternating in one process (see _harness.py):
  kiln         kiln.matmul on Tensors (Python op layer + output allocation + kernel)
  kiln kernel  kiln._cpu.matmul(a, b, out, False, False, None, "none"), out preallocated
  numpy        numpy.matmul(a, b)
  torch        torch.matmul(a, b)
  probe        (squares >= 512) bench/fma_probe.c's FMA chains, loaded in-process, on the
               same thread count: the cores' fp32 rate in the same rounds as the GEMMs
Shapes: squares 64..2048 (4096 with --big), the batch-128 MLP Linear products
128×784·784×256, 128×256·256×128, 128×128·128×10, the transformer MLP product
4096×512·512×2048, batches of 64 products 64×64·64×64 and 48×48·48×48 (3-D arrays), and
a matrix-vector product 1024×1024·1024×1 (b a column).
GFLOP/s = 2·M·N·K / median time;
% of peak uses bench/peak.py's FMA peak for the same thread count (its best rate per
thread CPU-second: a ceiling that other processes cannot lower, while they do lower every
wall-clock rate); "% probe" divides by the probe's median rate in the same rounds instead,
what the shared cores delivered while the GEMMs ran. Also, at 512³ and 1
thread, kiln._cpu.matmul_naive (triple loop) against the kernel: the foundation issue
asks for a speedup >= 20×. Each result is checked against NumPy (max relative error).
Also the AVX2 path against the AVX-512 path on the squares >= 512, kernel level
(_cpu.set_isa; where the CPU has both).

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
TRANSFORMER = [(4096, 512, 2048)]
BATCHED = [(64, 64, 64, 64), (64, 48, 48, 48)]  # (batch, M, K, N)
GEMV = [(1024, 1024, 1)]
NAMES = ["kiln", "kiln kernel", "numpy", "torch"]
PROBE_ITERS = 400_000  # ~1-2 ms of FMA chains a call on this machine


def _budget(flops: float, quick: bool) -> tuple[float, int]:
    if quick:
        return 0.25, 3
    return (6.0, 5) if flops > 5e9 else (4.0, 7) if flops > 1e9 else (2.0, 9)


def _case(name, m, k, n, quick, rng, batch=None, probe=False):
    import numpy as np
    import torch

    import kiln
    from kiln import _cpu

    bs = () if batch is None else (batch,)
    a = rng.standard_normal((*bs, m, k), dtype=np.float32)
    b = rng.standard_normal((*bs, k, n), dtype=np.float32)
    out = np.empty((*bs, m, n), np.float32)
    ka, kb = kiln.from_numpy(a), kiln.from_numpy(b)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    fns = {
        "kiln": lambda: kiln.matmul(ka, kb),
        "kiln kernel": lambda: _cpu.matmul(a, b, out, False, False, None, "none"),
        "numpy": lambda: np.matmul(a, b),
        "torch": lambda: torch.matmul(ta, tb),
    }
    run_probe = P.in_process() if probe else None
    if run_probe is not None:
        probe_flops = run_probe(PROBE_ITERS)  # FLOPs a call (lanes x chains x threads)
        fns["probe"] = lambda: run_probe(PROBE_ITERS)
    flops = 2.0 * m * n * k * (batch or 1)
    budget, mins = _budget(flops, quick)
    res = H.measure(fns, budget_s=budget, min_samples=mins, max_samples=500)
    ref = np.matmul(a.astype(np.float64), b.astype(np.float64))
    err = None
    with contextlib.suppress(*H.KERNEL_ERRORS):
        got = kiln.matmul(ka, kb).numpy()
        err = float(np.abs(got - ref).max() / max(np.abs(ref).max(), 1e-30))
    out = {"name": name, "shape": [m, k, n], "flops": flops, "res": res, "max_rel_err": err}
    if run_probe is not None and "median_s" in res.get("probe", {}):
        out["probe_gflops"] = probe_flops / res["probe"]["median_s"] * 1e-9
    return out


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
        cases.append(_case(f"{s}³", s, s, s, quick, rng, probe=s >= 512))
    for m, k, nn in MLP:
        H.log(f"  matmul {m}×{k}·{k}×{nn}, {n} thread(s)")
        cases.append(_case(f"MLP {m}×{k}·{k}×{nn}", m, k, nn, quick, rng))
    for m, k, nn in TRANSFORMER:
        H.log(f"  matmul {m}×{k}·{k}×{nn}, {n} thread(s)")
        cases.append(_case(f"transformer MLP {m}×{k}·{k}×{nn}", m, k, nn, quick, rng))
    for bt, m, k, nn in BATCHED:
        H.log(f"  matmul {bt}×({m}×{k}·{k}×{nn}), {n} thread(s)")
        cases.append(_case(f"batched {bt}×({m}×{k}·{k}×{nn})", m, k, nn, quick, rng, batch=bt))
    for m, k, nn in GEMV:
        H.log(f"  matmul {m}×{k}·{k}×{nn}, {n} thread(s)")
        cases.append(_case(f"matrix-vector {m}×{k}·{k}×{nn}", m, k, nn, quick, rng))
    naive = _naive(quick, rng) if n == 1 else None
    isa = _isa_cases([s for s in sizes if s >= 512][:1 if quick else None], quick, rng)
    return {"threads": n, "meta": meta, "cases": cases, "naive": naive, "isa": isa}


def _isa_cases(sizes, quick, rng) -> list[dict]:
    """The AVX2 path vs the AVX-512 path, kernel level, alternating (each call sets its
    ISA first; set_isa is a flag store). Empty where the CPU lacks AVX-512."""
    import numpy as np

    from kiln import _cpu

    if _cpu.supported_isa() != "avx512":
        return []
    before = _cpu.get_isa()
    out = []
    try:
        for s in sizes:
            H.log(f"  matmul {s}³ avx2 vs avx512")
            a = rng.standard_normal((s, s), dtype=np.float32)
            b = rng.standard_normal((s, s), dtype=np.float32)
            o = np.empty((s, s), np.float32)

            def on(isa, a=a, b=b, o=o):
                def fn():
                    _cpu.set_isa(isa)
                    _cpu.matmul(a, b, o, False, False, None, "none")
                return fn
            budget, mins = _budget(2.0 * s**3, quick)
            res = H.measure({"avx512": on("avx512"), "avx2": on("avx2")}, budget_s=budget,
                            min_samples=mins, max_samples=500)
            out.append({"name": f"{s}³", "shape": [s, s, s], "flops": 2.0 * s**3, "res": res})
    finally:
        _cpu.set_isa(before)
    return out


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
                H.fmt(gk / c["probe_gflops"] * 100 if gk and c.get("probe_gflops") else None,
                      0, "%"),
                H.fmt(_gf(c, "kiln kernel")), H.fmt(_gf(c, "numpy")), H.fmt(_gf(c, "torch")),
                H.ratio2(c["res"], "numpy"), H.ratio2(c["res"], "torch"),
                "—" if c["max_rel_err"] is None else f"{c['max_rel_err']:.0e}",
                H.fmt(c["res"].get("_other"), 2),
            ])
    hdr = ["shape", "thr", "kiln GFLOP/s (best)", "% peak", "% probe", "kiln kernel", "NumPy",
           "PyTorch",
           "kiln vs NumPy", "kiln vs torch", "rel err", "other"]
    out = [("GFLOP/s from medians (kiln's best sample in parentheses); "
            f"{payload['ratio']}, on medians (on best samples); % peak against the FMA peak "
            "for the same thread count (a ceiling other processes cannot lower); % probe "
            "against the FMA probe's median rate timed in the same rounds as the GEMMs "
            "(squares >= 512: what the shared cores delivered meanwhile)."), "",
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
    isa_rows = []
    for run in payload["runs"]:
        for c in run.get("isa") or []:
            g512, g2 = _gf(c, "avx512"), _gf(c, "avx2")
            isa_rows.append([c["name"], str(run["threads"]), H.fmt(g512), H.fmt(g2),
                             H.fmt(g2 / g512 * 100 if g2 and g512 else None, 0, "%"),
                             H.fmt(c["res"].get("_other"), 2)])
    if isa_rows:
        out += ["", "AVX2 path vs AVX-512 path, kernel GFLOP/s from medians (AVX2's FMA "
                "peak is half of AVX-512's at equal clocks):", "",
                H.md_table(["shape", "thr", "AVX-512", "AVX2", "AVX2 / AVX-512", "other"],
                           isa_rows)]
    out.append(H.missing_note(payload["runs"]))
    return "\n".join(out)


def main(argv=None) -> int:
    return H.main(__doc__, child, run, markdown, "small sizes, short budgets (< 30 s)", argv,
                  flags={"big": "add 4096³"})


if __name__ == "__main__":
    sys.exit(main())
