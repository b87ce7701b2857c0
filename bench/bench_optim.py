"""Optimizer steps: kiln.optim vs torch.optim on the CPU, float32.

Measured, alternating in one process (see _harness.py), at 1 and 2 threads:
  kiln           opt.step() (gathering the group's lists in Python + one kernel call)
  kiln kernel    kiln._cpu.adam_step / sgd_step on prebuilt lists (the kernel alone)
  torch foreach=False  torch's single-tensor loop (also torch's default on CPU tensors)
  torch foreach=True   torch's multi-tensor (_foreach_*) path
  torch fused          torch's fused CPU kernel (fused=True)
Optimizers: Adam (defaults) and SGD (momentum 0.9). Models: the parameters of an MLP
784-256-128-10 (6 tensors, 235,146 parameters) and 20 tensors of 512×1024 (10.5M).
Bytes per step count each array read or written once: Adam reads p, g, m, v and writes
p, m, v (28 B/parameter); SGD with momentum reads p, g, buf and writes p, buf
(20 B/parameter). "BW" is this machine's memory bandwidth measured in the same child
(best sample of kiln's threaded in-place scale x *= c over 64 MiB: 8 B/element), so
"% BW" says how far each step is from the memory floor (the MLP's 6.6 MB of optimizer
traffic stays in cache, so it can exceed 100%). Ratio: t_torch / t_kiln (> 1: kiln
faster), on medians.

    python bench/bench_optim.py [--quick] [--threads 1,2]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as H

MODELS = {
    "MLP 784-256-128-10": [(256, 784), (256,), (128, 256), (128,), (10, 128), (10,)],
    "20×512×1024": [(512, 1024)] * 20,
}
TORCH = ["torch foreach=False", "torch foreach=True", "torch fused"]
NAMES = ["kiln", "kiln kernel", *TORCH]
BYTES = {"Adam": 28, "SGD": 20}


def _bandwidth(quick: bool) -> float:
    """GB/s of kiln's threaded in-place scale over 64 MiB (reads + writes 8 B/element)."""
    import numpy as np

    from kiln import _cpu

    x = [np.ones(16 << 20, np.float32)]
    res = H.measure({"bw": lambda: _cpu.grad_scale(x, 1.0)}, budget_s=0.2 if quick else 1.0)
    return 8 * x[0].size / res["bw"]["min_s"] * 1e-9  # the best sample: the machine's rate


def _case(opt_name, model, quick, rng):
    import numpy as np
    import torch

    import kiln
    from kiln import _cpu

    shapes = MODELS[model]
    init = [rng.standard_normal(s).astype(np.float32) * 0.01 for s in shapes]
    grads = [rng.standard_normal(s).astype(np.float32) * 0.01 for s in shapes]
    kp = [kiln.tensor(a, requires_grad=True) for a in init]
    for p, g in zip(kp, grads, strict=True):
        p.grad = kiln.tensor(g)
    tp = [torch.tensor(a, requires_grad=True) for a in init]
    for p, g in zip(tp, grads, strict=True):
        p.grad = torch.tensor(g)
    kw = {"lr": 1e-3} if opt_name == "Adam" else {"lr": 1e-3, "momentum": 0.9}
    kopt = getattr(kiln.optim, opt_name)(kp, **kw)
    kopt.step()  # state allocated before timing, as for every torch contender
    fns = {"kiln": kopt.step}
    pa, ga = [p.data for p in kp], [p.grad.data for p in kp]
    st = [kopt.state[p] for p in kp]
    if opt_name == "Adam":
        m, v, steps = ([s[k].data for s in st] for k in ("exp_avg", "exp_avg_sq", "step"))
        fns["kiln kernel"] = lambda: _cpu.adam_step(pa, ga, m, v, [], steps, 1e-3, 0.9, 0.999,
                                                    1e-8, 0.0, False, False, False)
    else:
        bufs = [s["momentum_buffer"].data for s in st]
        fns["kiln kernel"] = lambda: _cpu.sgd_step(pa, ga, bufs, 1e-3, 0.9, 0.0, 0.0, False,
                                                   False, False)
    for name, opts in zip(TORCH, ({"foreach": False}, {"foreach": True}, {"fused": True}),
                          strict=True):
        topt = getattr(torch.optim, opt_name)(tp, **kw, **opts)
        topt.step()
        fns[name] = topt.step
    res = H.measure(fns, budget_s=0.3 if quick else 2.0, min_samples=5)
    n = sum(int(np.prod(s)) for s in shapes)
    return {"name": opt_name, "model": model, "params": n, "tensors": len(shapes),
            "bytes": BYTES[opt_name] * n, "res": res}


def child(n: int, quick: bool) -> dict:
    import numpy as np

    meta = H.setup_child(n)
    rng = np.random.default_rng(0)
    bw = _bandwidth(quick)
    cases = []
    for opt_name in ("Adam", "SGD"):
        for model in MODELS:
            H.log(f"  {opt_name} {model}, {n} thr")
            cases.append(_case(opt_name, model, quick, rng))
    return {"threads": n, "meta": meta, "bandwidth_gbs": bw, "cases": cases}


def run(quick: bool = False, threads=(1, 2)) -> dict:
    runs = H.run_per_thread(__file__, list(threads), ["--quick"] if quick else [])
    payload = {"bench": "optim", "machine": H.machine(), "ratio": H.RATIO_NOTE, "runs": runs}
    H.save("optim", payload)
    return payload


def _us(case, name):
    r = case["res"].get(name, {})
    return r["median_s"] * 1e6 if "median_s" in r else None


def markdown(payload: dict) -> str:
    out = [(f"µs per optimizer step (medians); {payload['ratio']}. % BW: bytes per step / "
            "time as a share of the measured memory bandwidth.")]
    for run in payload["runs"]:
        bw = run["bandwidth_gbs"]
        rows = []
        for c in run["cases"]:
            t = c["res"].get("kiln", {}).get("median_s")
            gbs = c["bytes"] / t * 1e-9 if t else None
            rows.append([
                c["name"], f"{c['model']} ({c['params']:,})", H.fmt(_us(c, "kiln")),
                H.fmt(_us(c, "kiln kernel")), *(H.fmt(_us(c, n)) for n in TORCH),
                *(H.fmt_ratio(H.ratio(c["res"], n)) for n in TORCH),
                H.fmt(gbs), H.fmt(None if gbs is None else 100 * gbs / bw, 0, "%"),
                H.fmt(c["res"].get("_other"), 2),
            ])
        hdr = ["opt", "model (params)", "kiln µs", "kernel µs", "foreach=False", "foreach=True",
               "fused", "vs foreach=False", "vs foreach=True", "vs fused", "kiln GB/s", "% BW",
               "other"]
        out += ["", f"**{run['threads']} thread(s)**, memory bandwidth {bw:.1f} GB/s", "",
                H.md_table(hdr, rows)]
    out.append(H.missing_note(payload["runs"]))
    return "\n".join(out)


def main(argv=None) -> int:
    return H.main(__doc__, child, run, markdown, "short budgets", argv)


if __name__ == "__main__":
    sys.exit(main())
