"""End-to-end training step: a batch-128 MLP (784-256-128-10, float32) trained with plain
tensors, autograd and a hand-written SGD update -- kiln vs PyTorch CPU, ms per step.

One step = forward (two Linear+ReLU, one Linear, cross-entropy), backward, and the
in-place SGD update of 6 parameters with the gradients reset. kiln uses its fused
``F.linear(..., activation="relu")`` (bias and ReLU in the GEMM's write-back); PyTorch
uses ``F.relu(F.linear(...))``, each library written the way its users would. FLOPs per
step: 3 x 2 x 128 x (784*256 + 256*128 + 128*10) for the three GEMM passes.

    python bench/bench_train.py [--quick] [--threads 1,2]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as H

LAYERS = [784, 256, 128, 10]
BATCH = 128
FLOPS = 3 * 2 * BATCH * sum(a * b for a, b in zip(LAYERS[:-1], LAYERS[1:]))


def _step_fn(lib, F, fused: bool):
    import numpy as np

    rng = np.random.default_rng(0)
    x = lib.from_numpy(rng.standard_normal((BATCH, LAYERS[0])).astype(np.float32))
    y = lib.from_numpy(rng.integers(0, LAYERS[-1], BATCH).astype(np.int64))
    params = []
    for i, o in zip(LAYERS[:-1], LAYERS[1:]):
        w = (rng.standard_normal((o, i)) / np.sqrt(i)).astype(np.float32)
        params += [lib.from_numpy(w).requires_grad_(), lib.zeros(o, requires_grad=True)]

    def step():
        h = x
        for k in range(0, len(params) - 2, 2):
            if fused:
                h = F.linear(h, params[k], params[k + 1], activation="relu")
            else:
                h = F.relu(F.linear(h, params[k], params[k + 1]))
        loss = F.cross_entropy(F.linear(h, params[-2], params[-1]), y)
        loss.backward()
        with lib.no_grad():
            for p in params:
                p -= 0.01 * p.grad
                p.grad = None

    return step


def child(n: int, quick: bool) -> dict:
    import torch
    import torch.nn.functional as TF

    import kiln
    import kiln.nn.functional as KF

    meta = H.setup_child(n)
    H.log(f"  MLP train step, {n} thr")
    res = H.measure({"kiln": _step_fn(kiln, KF, True), "torch": _step_fn(torch, TF, False)},
                    budget_s=0.5 if quick else 6.0, min_samples=7, sample_s=0.02, warmup=5)
    return {"threads": n, "meta": meta, "cases": [{"name": "MLP 784-256-128-10, batch 128",
                                                    "res": res}]}


def run(quick: bool = False, threads=(1, 2)) -> dict:
    runs = H.run_per_thread(__file__, list(threads), ["--quick"] if quick else [])
    payload = {"bench": "train", "machine": H.machine(), "ratio": H.RATIO_NOTE,
               "flops_per_step": FLOPS, "runs": runs}
    H.save("train", payload)
    return payload


def markdown(payload: dict) -> str:
    rows = []
    for run_ in payload["runs"]:
        for c in run_["cases"]:
            r = c["res"]
            k, t = r.get("kiln", {}), r.get("torch", {})
            ms = [None if "median_s" not in v else v["median_s"] * 1e3 for v in (k, t)]
            gf = [None if m is None else FLOPS / (m * 1e-3) / 1e9 for m in ms]
            rows.append([c["name"], str(run_["threads"]), H.fmt(ms[0], 2), H.fmt(gf[0]),
                         H.fmt(ms[1], 2), H.fmt(gf[1]), H.ratio2(r, "torch"),
                         H.fmt(r.get("_other"), 2)])
    hdr = ["model", "thr", "kiln ms/step", "kiln GFLOP/s", "PyTorch ms/step",
           "PyTorch GFLOP/s", "kiln vs torch", "other"]
    return "\n".join([
        f"One forward + backward + SGD update; GFLOP/s counts the GEMM work only "
        f"({FLOPS / 1e6:.0f} MFLOP per step); {payload['ratio']}, on medians (on best "
        "samples).", "", H.md_table(hdr, rows), H.missing_note(payload["runs"])])


def main(argv=None) -> int:
    return H.main(__doc__, child, run, markdown, "short budgets", argv)


if __name__ == "__main__":
    sys.exit(main())
