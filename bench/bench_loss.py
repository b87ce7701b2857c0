"""Losses: kiln vs PyTorch CPU, float32, forward + backward (the training path).

Measured, alternating in one process (see _harness.py), at 1 and 2 threads:
  kiln            kiln.nn.functional.<loss>(x, t).backward(); x.grad reset each call
  kiln composite  the same loss spelled in kiln ops (mse: ((x - t) ** 2).mean(); bce
                  with logits: (softplus(x) - x t).mean()) -- the oracle the one-node
                  losses replaced, shown for mse and bce_with_logits
  torch           torch.nn.functional.<loss>, same protocol
Shapes: (1024, 1024) = 1M elements (bandwidth-bound) and (256, 10) (a classifier
head: per-call overhead dominates). GB/s counts one read of x and t forward and one
read of x, t and write of grad_x backward (20 B/element). Ratio: t_torch / t_kiln
(> 1: kiln faster), on medians. "err" is max |kiln loss - torch loss|.

    python bench/bench_loss.py [--quick] [--threads 1,2]
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as H

SHAPES = [(1024, 1024), (256, 10)]


def _losses():
    """(name, kiln fn(F, x, t), torch fn(F, x, t), composite fn(kiln, x, t) or None,
    target kind)."""
    return [
        ("mse_loss", lambda F, x, t: F.mse_loss(x, t), lambda F, x, t: F.mse_loss(x, t),
         lambda k, x, t: ((x - t) ** 2).mean(), "normal"),
        ("l1_loss", lambda F, x, t: F.l1_loss(x, t), lambda F, x, t: F.l1_loss(x, t), None,
         "normal"),
        ("smooth_l1_loss", lambda F, x, t: F.smooth_l1_loss(x, t),
         lambda F, x, t: F.smooth_l1_loss(x, t), None, "normal"),
        ("huber_loss", lambda F, x, t: F.huber_loss(x, t), lambda F, x, t: F.huber_loss(x, t),
         None, "normal"),
        ("binary_cross_entropy_with_logits",
         lambda F, x, t: F.binary_cross_entropy_with_logits(x, t),
         lambda F, x, t: F.binary_cross_entropy_with_logits(x, t),
         lambda k, x, t: (k.nn.functional.softplus(x) - x * t).mean(), "prob"),
        ("binary_cross_entropy", lambda F, x, t: F.binary_cross_entropy(x.sigmoid(), t),
         lambda F, x, t: F.binary_cross_entropy(x.sigmoid(), t), None, "prob"),
        ("kl_div", lambda F, x, t: F.kl_div(x, t, reduction="batchmean"),
         lambda F, x, t: F.kl_div(x, t, reduction="batchmean"), None, "prob"),
    ]


def _case(loss, shape, quick, rng):
    import numpy as np
    import torch
    import torch.nn.functional as TF

    import kiln
    import kiln.nn.functional as KF

    name, kf, tf, comp, kind = loss
    x = rng.standard_normal(shape, dtype=np.float32)
    t = (rng.random(shape, dtype=np.float32) if kind == "prob"
         else rng.standard_normal(shape, dtype=np.float32))
    kx, tx = kiln.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    kt, tt = kiln.from_numpy(t), torch.from_numpy(t)

    def run_kiln():
        kf(KF, kx, kt).backward()
        kx.grad = None

    def run_torch():
        tf(TF, tx, tt).backward()
        tx.grad = None

    fns = {"kiln": run_kiln, "torch": run_torch}
    if comp is not None:
        def run_comp():
            comp(kiln, kx, kt).backward()
            kx.grad = None

        fns["kiln composite"] = run_comp
    res = H.measure(fns, budget_s=0.15 if quick else 1.0, min_samples=5)
    err = None
    with contextlib.suppress(*H.KERNEL_ERRORS):
        err = abs(kf(KF, kx, kt).item() - tf(TF, tx, tt).item())
    return {"name": name, "shape": list(shape), "bytes": 20 * x.size, "res": res, "err": err}


def child(n: int, quick: bool) -> dict:
    import numpy as np

    meta = H.setup_child(n)
    rng = np.random.default_rng(0)
    cases = []
    for loss in _losses():
        for shape in SHAPES[:1] if quick else SHAPES:
            H.log(f"  {loss[0]} {shape}, {n} thr")
            cases.append(_case(loss, shape, quick, rng))
    return {"threads": n, "meta": meta, "cases": cases}


def run(quick: bool = False, threads=(1, 2)) -> dict:
    runs = H.run_per_thread(__file__, list(threads), ["--quick"] if quick else [])
    payload = {"bench": "loss", "machine": H.machine(), "ratio": H.RATIO_NOTE, "runs": runs}
    H.save("loss", payload)
    return payload


def markdown(payload: dict) -> str:
    out = [f"fwd+bwd, µs per call from medians; {payload['ratio']}."]
    for run in payload["runs"]:
        rows = []
        for c in run["cases"]:
            r = c["res"]

            def us(k, r=r):
                return H.fmt(r[k]["median_s"] * 1e6) if "median_s" in r.get(k, {}) else "—"

            gbs = (c["bytes"] / r["kiln"]["median_s"] * 1e-9) if "median_s" in r.get(
                "kiln", {}) else None
            rows.append([c["name"], "×".join(map(str, c["shape"])), us("kiln"),
                         us("kiln composite"), us("torch"), H.fmt(gbs),
                         H.ratio2(r, "torch"),
                         H.fmt_ratio(H.ratio(r, "kiln composite")),
                         "—" if c["err"] is None else f"{c['err']:.0e}",
                         H.fmt(r.get("_other"), 2)])
        hdr = ["loss", "shape", "kiln µs", "composite µs", "PyTorch µs", "kiln GB/s",
               "kiln vs torch", "kiln vs composite", "err", "other"]
        out += ["", f"**{run['threads']} thread(s)**", "", H.md_table(hdr, rows)]
    out.append(H.missing_note(payload["runs"]))
    return "\n".join(out)


def main(argv=None) -> int:
    return H.main(__doc__, child, run, markdown, "1M elements only, short budgets", argv)


if __name__ == "__main__":
    sys.exit(main())
