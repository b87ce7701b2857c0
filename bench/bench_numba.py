"""The Numba CUDA fallback table timed against the native CUDA table (kiln._cuda) on a GPU.

Users who run kiln where kiln._cuda is missing get the Numba kernels (issue 9); this
bench tells them the cost. For each case both tables run the same kernel on the same
device arrays, alternating, timed with CUDA events around ``reps`` back-to-back launches
after a warm-up (which also compiles the Numba kernel), median of the samples. Reported:
ms per call, GFLOP/s or GB/s, and ratio = t_native / t_numba (< 1: the fallback is slower).
A kernel the native table does not implement yet is timed on the Numba table alone.

Needs a CUDA GPU (numba finds it); without one it records why and exits cleanly.
``--sim`` runs the cases at tiny sizes in Numba's CUDA simulator: a smoke test of this
script only, its times mean nothing.

    python bench/bench_numba.py            # on a GPU machine
    python bench/bench_numba.py --sim      # smoke test without a GPU
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as H


def _cases(np, small: bool):
    """(name, kernel, host-argument builder, work: ('flop'|'byte', amount))."""
    s = 64 if small else 1
    f32 = np.float32
    r = np.random.default_rng(0)

    def rnd(*shape):
        return r.standard_normal(shape).astype(f32)

    n = (1 << 24) // (s * s)
    m = 2048 // s
    rows, cols = 4096 // s, 4096 // s
    B, Hh, T, D = (4, 8, 1024, 64) if not small else (1, 2, 16, 8)
    N, C, HW = (128, 6, 14) if not small else (2, 3, 6)
    return [
        (f"relu {n}", "relu", lambda: (rnd(n), np.empty(n, f32)), ("byte", 8 * n)),
        (f"matmul {m}³", "matmul", lambda: (rnd(m, m), rnd(m, m), np.empty((m, m), f32)),
         ("flop", 2 * m ** 3)),
        (f"matmul_naive {m // 2}³", "matmul_naive",
         lambda: (rnd(m // 2, m // 2), rnd(m // 2, m // 2), np.empty((m // 2, m // 2), f32)),
         ("flop", 2 * (m // 2) ** 3)),
        (f"softmax {rows}×{cols}", "softmax",
         lambda: (rnd(rows, cols), np.empty((rows, cols), f32), -1), ("byte", 8 * rows * cols)),
        (f"layer_norm {rows}×{cols}", "layer_norm",
         lambda: (rnd(rows, cols), rnd(cols), rnd(cols), np.empty((rows, cols), f32),
                  np.empty(rows, f32), np.empty(rows, f32), 1e-5), ("byte", 8 * rows * cols)),
        (f"conv2d {N}×{C}×{HW}² * 16×{C}×5²", "conv2d",
         lambda: (rnd(N, C, HW, HW), rnd(16, C, 5, 5), rnd(16),
                  np.empty((N, 16, HW - 4, HW - 4), f32), 1, 1, 0, 0, 1, 1, 1),
         ("flop", 2 * N * 16 * (HW - 4) ** 2 * C * 25)),
        (f"attention_forward B{B}H{Hh}T{T}D{D}", "attention_forward",
         lambda: (rnd(B, Hh, T, D), rnd(B, Hh, T, D), rnd(B, Hh, T, D), None,
                  np.empty((B, Hh, T, D), f32), np.empty((B, Hh, T), f32), D ** -0.5, False,
                  0.0, 0), ("flop", 4 * B * Hh * T * T * D)),
    ]


def _time(cuda, fn, reps: int, samples: int) -> float:
    """Median seconds per call over ``samples`` event-timed batches of ``reps`` calls."""
    out = []
    for _ in range(samples):
        a, b = cuda.event(), cuda.event()
        a.record()
        for _ in range(reps):
            fn()
        b.record()
        b.synchronize()
        out.append(a.elapsed_time(b) / 1e3 / reps)
    out.sort()
    return out[len(out) // 2]


def run(quick: bool = False, sim: bool = False) -> dict:
    if sim:
        os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
    import numpy as np

    try:
        from numba import cuda
    except ImportError as e:
        return {"skipped": f"numba is not installed ({e}); pip install 'kiln[numba]'"}
    from kiln.backends import numba_cuda as nc

    ok, why = nc.status()
    if not ok:
        return {"skipped": why}
    simulated = bool(os.environ.get("NUMBA_ENABLE_CUDASIM") == "1")
    if simulated and not sim:
        return {"skipped": "NUMBA_ENABLE_CUDASIM=1 is set (the simulator has no timings; "
                           "use --sim for a smoke run)"}
    try:
        from kiln import _cuda as native
        native_ok = native.is_available()
    except ImportError:
        native, native_ok = None, False
    gpu = why
    reps, samples = (1, 1) if simulated else ((3, 5) if quick else (10, 11))
    rows = []
    for name, kernel, build, (unit, amount) in _cases(np, small=simulated):
        args = [cuda.to_device(a) if isinstance(a, np.ndarray) else a for a in build()]
        contenders = {"numba": lambda k=kernel, a=args: getattr(nc, k)(*a)}
        if native_ok:
            contenders["native"] = lambda k=kernel, a=args: getattr(native, k)(*a)
        res = {}
        for who, fn in contenders.items():  # warm-up: compiles, and shows a missing kernel
            res[who] = {}
            try:
                fn()
                cuda.synchronize()
            except Exception as e:  # noqa: BLE001 - a missing native kernel is a result
                res[who] = {"error": f"{type(e).__name__}: {str(e)[:120]}"}
        for _ in range(0 if simulated else 2):  # alternate the tables
            for who, fn in contenders.items():
                if "error" not in res[who]:
                    t = _time(cuda, fn, reps, samples)
                    prev = res.get(who, {}).get("seconds")
                    res[who] = {"seconds": t if prev is None else min(prev, t)}
        rows.append({"name": name, "kernel": kernel, "unit": unit, "amount": amount, **res})
    return {"gpu": gpu, "simulated": simulated, "native": native_ok, "rows": rows,
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def markdown(p: dict) -> str:
    if "skipped" in p:
        return f"Not run: {p['skipped']}."
    out = [f"{p['gpu']} ({p['date']})" + (" — **simulator smoke run, times meaningless**"
                                         if p["simulated"] else ""), ""]
    rows = []
    for r in p["rows"]:
        cells = [r["name"]]
        if p["simulated"]:
            rows.append(cells + [r[w].get("error", "ran") if w in r else "—"
                                 for w in ("numba", "native")] + ["—"])
            continue
        rate = {}
        for who in ("numba", "native"):
            s = r.get(who, {}).get("seconds")
            if s:
                rate[who] = r["amount"] / s / 1e9
                cells.append(f"{s * 1e3:.3f} ms ({rate[who]:.0f} "
                             f"{'GFLOP/s' if r['unit'] == 'flop' else 'GB/s'})")
            else:
                cells.append("—")
        ratio = (r["native"]["seconds"] / r["numba"]["seconds"]
                 if r.get("native", {}).get("seconds") and r.get("numba", {}).get("seconds")
                 else None)
        cells.append(H.fmt_ratio(ratio))
        rows.append(cells)
    out.append(H.md_table(["case", "Numba table", "native kiln._cuda", "native / numba"], rows))
    out.append("\nratio = t_native / t_numba (< 1: the fallback is slower); — : not implemented"
               " on that table (or no native table).")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer samples")
    ap.add_argument("--sim", action="store_true", help="smoke run in the CUDA simulator")
    a = ap.parse_args(argv)
    payload = run(a.quick, a.sim)
    H.save("numba", payload)
    print(markdown(payload))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
