"""Per-op cost from Python on tiny tensors: kiln vs PyTorch CPU, microseconds per call.

On 4×4 float32 tensors the arithmetic is nothing, so the time is the framework's own
cost per op: argument checks, dispatch, output allocation, graph recording. Measured,
alternating in one process (see _harness.py), at 1 and 2 threads:
  fwd          ``a + b``, ``x.relu()``, ``a @ b`` on inputs without requires_grad
  fwd (grad)   the same with requires_grad=True inputs (the op records a graph node)
  fwd+bwd      ``(a * b).sum().backward()`` (counted as the op plus its sum) and
               ``x.relu().sum().backward()``; the leaves' .grad are reset to None per call
  1 op fwd+bwd ``(a * b).backward(g)`` and ``x.relu().backward(g)``: exactly one op,
               forward and backward, with the output gradient given (no sum)
A sample is a few thousand back-to-back calls (about 5 ms); the figure is the median
over samples of the mean per call, after warm-up. Targets (the overhead issue): a small
op's forward < 3 µs, forward + backward of one op < 15 µs.

    python bench/bench_overhead.py [--quick] [--threads 1,2]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as H

FWD_TARGET_US, FWD_BWD_TARGET_US = 3.0, 15.0
NAMES = ["kiln", "torch"]


def _cases(lib, grad: bool):
    """{case name: (mode, callable)} for one library (kiln or torch)."""
    import numpy as np

    rng = np.random.default_rng(0)

    def t():
        x = rng.standard_normal((4, 4)).astype(np.float32)
        return lib.tensor(x, requires_grad=bool(grad))

    a, b, x = t(), t(), t()
    if grad == "bwd":

        def mul_sum():
            (a * b).sum().backward()
            a.grad = None
            b.grad = None

        def relu_sum():
            x.relu().sum().backward()
            x.grad = None

        g = lib.tensor(np.ones((4, 4), np.float32))

        def mul_one():
            (a * b).backward(g)
            a.grad = None
            b.grad = None

        def relu_one():
            x.relu().backward(g)
            x.grad = None

        return {"(a * b).sum().backward()": ("fwd+bwd", mul_sum),
                "x.relu().sum().backward()": ("fwd+bwd", relu_sum),
                "(a * b).backward(g)": ("1 op fwd+bwd", mul_one),
                "x.relu().backward(g)": ("1 op fwd+bwd", relu_one)}
    mode = "fwd (grad)" if grad else "fwd"
    return {"a + b": (mode, lambda: a + b), "x.relu()": (mode, lambda: x.relu()),
            "a @ b": (mode, lambda: a @ b)}


def child(n: int, quick: bool) -> dict:
    import torch

    import kiln

    meta = H.setup_child(n)
    cases = []
    for grad in (False, True, "bwd"):
        kc, tc = _cases(kiln, grad), _cases(torch, grad)
        for name, (mode, kfn) in kc.items():
            H.log(f"  {name} {mode}, {n} thr")
            res = H.measure({"kiln": kfn, "torch": tc[name][1]}, budget_s=0.2 if quick else 3.0,
                            min_samples=7, sample_s=5e-3, warmup=200)
            cases.append({"name": name, "mode": mode, "res": res})
    return {"threads": n, "meta": meta, "cases": cases}


def run(quick: bool = False, threads=(1, 2)) -> dict:
    runs = H.run_per_thread(__file__, list(threads), ["--quick"] if quick else [])
    payload = {"bench": "overhead", "machine": H.machine(), "ratio": H.RATIO_NOTE,
               "targets_us": {"fwd": FWD_TARGET_US, "fwd+bwd": FWD_BWD_TARGET_US,
                              "1 op fwd+bwd": FWD_BWD_TARGET_US},
               "runs": runs}
    H.save("overhead", payload)
    return payload


def _us(case, name):
    r = case["res"].get(name, {})
    return r["median_s"] * 1e6 if "median_s" in r else None


def _verdict(us, target):
    return "—" if us is None else ("yes" if us < target else "**no**")


def markdown(payload: dict) -> str:
    rows = []
    for run in payload["runs"]:
        for c in run["cases"]:
            k, t = _us(c, "kiln"), _us(c, "torch")
            target = FWD_BWD_TARGET_US if "bwd" in c["mode"] else FWD_TARGET_US
            best = c["res"].get("kiln", {}).get("min_s")
            rows.append([f"`{c['name']}`", c["mode"], str(run["threads"]),
                         H.fmt(k, 2) + (f" ({best * 1e6:.2f})" if best else ""), H.fmt(t, 2),
                         H.ratio2(c["res"], "torch"), f"< {target:g}", _verdict(k, target),
                         _verdict(best and best * 1e6, target)])
    hdr = ["op", "mode", "thr", "kiln µs (best)", "PyTorch µs", "kiln vs torch", "target µs",
           "met (median)", "met (best)"]
    out = [(f"µs per call (median over samples of ~5 ms of back-to-back calls; kiln's best "
           f"sample in parentheses) on 4×4 float32; {payload['ratio']}, on medians (on best "
            "samples)."), "",
           H.md_table(hdr, rows), H.missing_note(payload["runs"])]
    return "\n".join(out)


def main(argv=None) -> int:
    return H.main(__doc__, child, run, markdown, "short budgets", argv)


if __name__ == "__main__":
    sys.exit(main())
