"""Fused attention: kiln's scaled_dot_product_attention vs PyTorch's SDPA (CPU), float32.

Shapes (B, H, T, D): 8×8×256×64, 4×8×1024×64, 1×8×4096×64; self-attention, causal and
not; forward (no autograd graph) and forward+backward (``out.backward(g)`` with a
preallocated g; the leaves' .grad reset each call). GFLOP/s counts the useful work:
forward 4·B·H·T²·D, backward 2.5× that, both halved for causal (the skipped upper
triangle is not counted, for either contender). "peak MiB" is the rise of the process's
resident-set high-water mark over one call (VmHWM after resetting it via
/proc/self/clear_refs), measured once per contender, first kiln then torch; a T×T float32
score matrix per head would be B·H·T²·4 bytes. Ratio: t_torch / t_kiln (> 1: kiln faster).

    python bench/bench_attention.py [--quick] [--threads 1,2]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as H

SHAPES = [(8, 8, 256, 64), (4, 8, 1024, 64), (1, 8, 4096, 64)]
QUICK_SHAPES = [(8, 8, 256, 64), (4, 8, 1024, 64)]


def _rss_rise(fn) -> float | None:
    """MiB the resident-set peak rose during fn(), or None where it cannot be reset."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")

        def hwm():
            with open("/proc/self/status") as f:
                return next(int(x.split()[1]) for x in f if x.startswith("VmHWM:"))

        def rss():
            with open("/proc/self/status") as f:
                return next(int(x.split()[1]) for x in f if x.startswith("VmRSS:"))

        r0 = rss()
        fn()
        return (hwm() - r0) / 1024
    except (OSError, StopIteration):
        return None


def _case(shape, causal, bwd, quick, rng):
    import numpy as np
    import torch
    import torch.nn.functional as TF

    import kiln
    import kiln.nn.functional as KF

    B, Hh, T, D = shape
    arrs = [rng.standard_normal(shape, dtype=np.float32) for _ in range(4)]
    if bwd:
        kq, kk, kv = [kiln.tensor(a, requires_grad=True) for a in arrs[:3]]
        tq, tk, tv = [torch.tensor(a, requires_grad=True) for a in arrs[:3]]
        kg, tg = kiln.from_numpy(arrs[3]), torch.from_numpy(arrs[3])

        def kiln_fn():
            KF.scaled_dot_product_attention(kq, kk, kv, is_causal=causal).backward(kg)
            kq.grad = kk.grad = kv.grad = None

        def torch_fn():
            TF.scaled_dot_product_attention(tq, tk, tv, is_causal=causal).backward(tg)
            tq.grad = tk.grad = tv.grad = None
    else:
        kq, kk, kv = [kiln.from_numpy(a) for a in arrs[:3]]
        tq, tk, tv = [torch.from_numpy(a) for a in arrs[:3]]

        def kiln_fn():
            KF.scaled_dot_product_attention(kq, kk, kv, is_causal=causal)

        def torch_fn():
            with torch.no_grad():
                TF.scaled_dot_product_attention(tq, tk, tv, is_causal=causal)

    mem = {"kiln": _rss_rise(kiln_fn), "torch": _rss_rise(torch_fn)}
    big = T >= 4096
    res = H.measure({"kiln": kiln_fn, "torch": torch_fn},
                    budget_s=0.3 if quick else (4.0 if big else 2.0),
                    min_samples=3 if big or quick else 5, warmup=1 if big else 2)
    with torch.no_grad():
        ref = TF.scaled_dot_product_attention(*[torch.from_numpy(a) for a in arrs[:3]],
                                              is_causal=causal).numpy()
    got = KF.scaled_dot_product_attention(*[kiln.from_numpy(a) for a in arrs[:3]],
                                          is_causal=causal).numpy()
    err = float(np.abs(got - ref).max() / np.abs(ref).max())
    flops = 4.0 * B * Hh * T * T * D * (0.5 if causal else 1.0) * (3.5 if bwd else 1.0)
    return {"name": "×".join(map(str, shape)), "causal": causal,
            "mode": "fwd+bwd" if bwd else "fwd", "flops": flops, "res": res, "err": err,
            "mem": mem, "tt_mib": B * Hh * T * T * 4 / 2**20}


def child(n: int, quick: bool) -> dict:
    import numpy as np

    meta = H.setup_child(n)
    rng = np.random.default_rng(0)
    cases = []
    for shape in QUICK_SHAPES if quick else SHAPES:
        for causal in (False, True):
            for bwd in (False, True):
                H.log(f"  {shape} causal={causal} {'fwd+bwd' if bwd else 'fwd'}, {n} thr")
                cases.append(_case(shape, causal, bwd, quick, rng))
    return {"threads": n, "meta": meta, "cases": cases}


def run(quick: bool = False, threads=(1, 2)) -> dict:
    runs = H.run_per_thread(__file__, list(threads), ["--quick"] if quick else [])
    payload = {"bench": "attention", "machine": H.machine(), "ratio": H.RATIO_NOTE,
               "runs": runs}
    H.save("attention", payload)
    return payload


def _gf(case, name):
    r = case["res"].get(name, {})
    return case["flops"] / r["median_s"] * 1e-9 if "median_s" in r else None


def markdown(payload: dict) -> str:
    out = [("GFLOP/s from medians (causal counts half the score matrix); "
            f"{payload['ratio']}, on medians (on best samples). peak MiB: rise of the RSS "
            "high-water mark over one call; T×T: one float32 score matrix per head, for scale.")]
    for run in payload["runs"]:
        rows = []
        for c in run["cases"]:
            rows.append([
                c["name"], "yes" if c["causal"] else "no", c["mode"], H.fmt(_gf(c, "kiln")),
                H.fmt(_gf(c, "torch")), H.ratio2(c["res"], "torch"),
                H.fmt(c["mem"].get("kiln"), 0), H.fmt(c["mem"].get("torch"), 0),
                H.fmt(c["tt_mib"], 0), f"{c['err']:.0e}", H.fmt(c["res"].get("_other"), 2),
            ])
        hdr = ["B×H×T×D", "causal", "mode", "kiln GFLOP/s", "PyTorch", "kiln vs torch",
               "kiln peak MiB", "torch peak MiB", "T×T MiB", "rel err", "other"]
        out += ["", f"**{run['threads']} thread(s)**", "", H.md_table(hdr, rows)]
    out.append(H.missing_note(payload["runs"]))
    return "\n".join(out)


def main(argv=None) -> int:
    return H.main(__doc__, child, run, markdown, "T = 256 and 1024 only, short budgets", argv)


if __name__ == "__main__":
    sys.exit(main())
