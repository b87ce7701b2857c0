"""Convolutions: kiln vs PyTorch CPU, float32, forward and forward+backward, 1 and 2 threads.

Measured, alternating in one process (see _harness.py), per layer shape:
  kiln         kiln.nn.functional.conv2d on Tensors (op layer + allocation + kernels)
  kiln kernel  kiln._cpu.conv2d (and conv2d_dgrad + conv2d_wgrad) into preallocated arrays
  torch        torch.nn.functional.conv2d
Modes: "fwd" (no grad) and "fwd+bwd": forward, then ``y.backward(g)`` with a preallocated
g of ones (the gradient of y.sum()), producing the gradients of input, weight and bias;
the leaves' .grad are reset to None each call.
Shapes (N, C, H, W) -> C_out, kernel k: (64,1,28,28)->6 k5; (64,3,32,32)->32 k3 p1;
(64,64,32,32)->64 k3 p1; (32,128,16,16)->128 k3 p1; depthwise (32,128,16,16) groups 128
k3 p1; (32,256,14,14)->64 k1.

GFLOP/s counts 2·N·C_out·Ho·Wo·(C/groups)·kh·kw per convolution (forward = 1, fwd+bwd =
3: dgrad and wgrad each cost a forward); % peak uses bench/peak.py's FMA peak. "AI" is the
forward's arithmetic intensity, FLOPs per byte of input + weight + output touched once,
against the machine balance (peak / ~10 GB/s): low-AI shapes (k1 input layers, depthwise)
are bound by memory and call overhead, not FMAs.

Memory: "peak MB" is how far the process's resident-set high-water mark (VmHWM in
/proc/self/status, reset to the current RSS by writing 5 to /proc/self/clear_refs just
before) rises above the resident set it had before 3 fwd+bwd calls, measured in a fresh
subprocess per contender and shape after its inputs exist -- outputs, gradients, im2col /
GEMM workspaces and allocator caches included. Memory a library touched during the first
call and reuses in the next two is counted once. kiln's subprocess imports
kiln (its caching allocator serves NumPy); torch's does not import kiln.

    python bench/bench_conv.py [--quick] [--threads 1,2]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as H
import peak as P

# (label, (N, C, H, W), C_out, k, padding, groups)
SHAPES = [
    ("LeNet conv1", (64, 1, 28, 28), 6, 5, 0, 1),
    ("CIFAR conv1", (64, 3, 32, 32), 32, 3, 1, 1),
    ("64→64 3×3", (64, 64, 32, 32), 64, 3, 1, 1),
    ("128→128 3×3", (32, 128, 16, 16), 128, 3, 1, 1),
    ("depthwise 3×3", (32, 128, 16, 16), 128, 3, 1, 128),
    ("256→64 1×1", (32, 256, 14, 14), 64, 1, 0, 1),
]
NAMES = ["kiln", "kiln kernel", "torch"]
MEM_NAMES = ["kiln", "torch"]


def _geometry(shape):
    _, (n, c, h, w), co, k, p, g = shape
    ho, wo = h + 2 * p - k + 1, w + 2 * p - k + 1
    flops = 2.0 * n * co * ho * wo * (c // g) * k * k
    nbytes = 4.0 * (n * c * h * w + co * (c // g) * k * k + n * co * ho * wo)
    return ho, wo, flops, nbytes


def _inputs(shape, seed=0):
    import numpy as np

    _, (n, c, h, w), co, k, p, g = shape
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w), dtype=np.float32)
    wt = (rng.standard_normal((co, c // g, k, k), dtype=np.float32) * 0.1).astype(np.float32)
    b = rng.standard_normal(co, dtype=np.float32)
    return x, wt, b


def _case(shape, bwd, quick):
    import numpy as np
    import torch
    import torch.nn.functional as TF

    import kiln
    import kiln.nn.functional as KF
    from kiln import _cpu

    label, _, co, k, p, g = shape
    ho, wo, flops, nbytes = _geometry(shape)
    x, w, b = _inputs(shape)
    n = x.shape[0]
    out = np.empty((n, co, ho, wo), np.float32)
    ones = np.ones_like(out)
    gx, gw, gb = np.empty_like(x), np.empty_like(w), np.empty_like(b)
    args = (1, 1, p, p, 1, 1, g)
    if not bwd:
        kx, kw, kb = (kiln.from_numpy(a) for a in (x, w, b))
        tx, tw, tb = (torch.from_numpy(a) for a in (x, w, b))

        def torch_f():
            with torch.no_grad():
                return TF.conv2d(tx, tw, tb, 1, p, 1, g)

        fns = {"kiln": lambda: KF.conv2d(kx, kw, kb, 1, p, 1, g),
               "kiln kernel": lambda: _cpu.conv2d(x, w, b, out, *args),
               "torch": torch_f}
    else:
        kx, kw, kb = (kiln.tensor(a, requires_grad=True) for a in (x, w, b))
        tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
        kg, tg = kiln.from_numpy(ones), torch.from_numpy(ones)

        def kiln_fb():
            KF.conv2d(kx, kw, kb, 1, p, 1, g).backward(kg)
            kx.grad = kw.grad = kb.grad = None

        def kernel_fb():
            _cpu.conv2d(x, w, b, out, *args)
            _cpu.conv2d_dgrad(ones, w, gx, *args)
            _cpu.conv2d_wgrad(ones, x, gw, gb, *args)

        def torch_fb():
            TF.conv2d(tx, tw, tb, 1, p, 1, g).backward(tg)
            tx.grad = tw.grad = tb.grad = None

        fns = {"kiln": kiln_fb, "kiln kernel": kernel_fb, "torch": torch_fb}
    total = flops * (3 if bwd else 1)
    budget = 0.3 if quick else (3.0 if total > 2e9 else 1.5)
    res = H.measure(fns, budget_s=budget, min_samples=3 if quick else 5)
    # correctness of what was timed: forward and the three gradients against torch
    err = None
    try:
        ky = KF.conv2d(*(kiln.from_numpy(a) for a in (x, w, b)), 1, p, 1, g).numpy()
        ty = TF.conv2d(*(torch.from_numpy(a) for a in (x, w, b)), 1, p, 1, g).numpy()
        err = float(np.abs(ky - ty).max() / max(1e-30, np.abs(ty).max()))
    except H.KERNEL_ERRORS:
        pass
    return {"name": label, "mode": "fwd+bwd" if bwd else "fwd", "flops": total,
            "ai": flops / nbytes, "res": res, "err": err}


# ---- memory probe: one fresh subprocess per (shape, contender) -----------------------
def _mem_probe(idx: int, who: str, threads: int) -> dict:
    import gc

    shape = SHAPES[idx]
    _, _, co, k, p, g = shape
    import numpy as np
    if who == "kiln":
        import kiln
        import kiln.nn.functional as F
        kiln.set_num_threads(threads)
        mk = lambda a, rg=False: kiln.tensor(a, requires_grad=rg)  # noqa: E731
    else:
        import torch
        import torch.nn.functional as F
        torch.set_num_threads(threads)
        mk = lambda a, rg=False: torch.tensor(a, requires_grad=rg)  # noqa: E731
    x, w, b = _inputs(shape)
    tx, tw, tb = (mk(a, True) for a in (x, w, b))
    ho, wo, _, _ = _geometry(shape)
    ones = mk(np.ones((x.shape[0], co, ho, wo), np.float32))
    gc.collect()

    def status_kb(key):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        raise OSError(key)

    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := current RSS
    before = status_kb("VmRSS")
    for _ in range(3):
        F.conv2d(tx, tw, tb, 1, p, 1, g).backward(ones)
        tx.grad = tw.grad = tb.grad = None
    return {"peak_mb": (status_kb("VmHWM") - before) / 1024.0}


def _memory(threads: int) -> list[dict]:
    out = []
    for i in range(len(SHAPES)):
        row = {}
        for who in MEM_NAMES:
            env = dict(os.environ, **{v: str(threads) for v in H.THREAD_VARS})
            proc = subprocess.run([sys.executable, __file__, "--mem-probe", str(i), who,
                                   str(threads)], env=env, stdout=subprocess.PIPE, text=True,
                                  check=False)
            try:
                row[who] = json.loads(proc.stdout.strip().splitlines()[-1])["peak_mb"]
            except (IndexError, ValueError, KeyError):
                row[who] = None
        out.append(row)
    return out


def child(n: int, quick: bool) -> dict:
    meta = H.setup_child(n)
    cases = []
    for shape in SHAPES:
        for bwd in (False, True):
            H.log(f"  conv {shape[0]} {'fwd+bwd' if bwd else 'fwd'}, {n} thr")
            cases.append(_case(shape, bwd, quick))
    H.log(f"  memory probes, {n} thr")
    return {"threads": n, "meta": meta, "cases": cases, "memory": _memory(n)}


def run(quick: bool = False, threads=(1, 2)) -> dict:
    peak = P.load(quick=quick)
    runs = H.run_per_thread(__file__, list(threads), ["--quick"] if quick else [])
    payload = {"bench": "conv", "machine": H.machine(), "peak": peak, "ratio": H.RATIO_NOTE,
               "runs": runs}
    H.save("conv", payload)
    return payload


def _gflops(case, name):
    r = case["res"].get(name, {})
    return case["flops"] / r["median_s"] * 1e-9 if "median_s" in r else None


def markdown(payload: dict) -> str:
    out = [(f"GFLOP/s from medians (forward FLOPs ×3 for fwd+bwd); {payload['ratio']}, on "
            "medians (on best samples). % peak: kiln vs bench/peak.py's FMA peak at that "
            "thread count. AI: forward FLOPs per byte (input + weight + output). peak MB: "
            "growth of the RSS high-water mark over 3 fwd+bwd calls in a fresh process "
            "(see the script's docstring). err: max |kiln - torch| / max |torch|, forward.")]
    for run in payload["runs"]:
        pk = P.peak_gflops(payload.get("peak", {}), run["threads"])
        rows = []
        for i, c in enumerate(run["cases"]):
            kg = _gflops(c, "kiln")
            mem = run.get("memory", [{}] * len(SHAPES))[i // 2] if c["mode"] == "fwd+bwd" else {}
            rows.append([
                c["name"], c["mode"], H.fmt(kg),
                H.fmt(100 * kg / pk, 0, "%") if kg and pk else "—",
                H.fmt(_gflops(c, "kiln kernel")), H.fmt(_gflops(c, "torch")),
                H.ratio2(c["res"], "torch"),
                H.fmt_ratio(H.ratio(c["res"], "torch", "kiln kernel")),
                H.fmt(c["ai"], 0),
                H.fmt(mem.get("kiln"), 1) if mem else "", H.fmt(mem.get("torch"), 1) if mem else "",
                "—" if c["err"] is None else f"{c['err']:.0e}",
                H.fmt(c["res"].get("_other"), 2),
            ])
        hdr = ["layer", "mode", "kiln GFLOP/s", "% peak", "kiln kernel", "PyTorch",
               "kiln vs torch", "kernel vs torch", "AI", "kiln peak MB", "torch peak MB",
               "err", "other"]
        out += ["", f"**{run['threads']} thread(s)**", "", H.md_table(hdr, rows)]
    out.append(H.missing_note(payload["runs"]))
    return "\n".join(out)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--mem-probe"]:
        H.emit(_mem_probe(int(argv[1]), argv[2], int(argv[3])))
        return 0
    return H.main(__doc__, child, run, markdown, "short budgets", argv)


if __name__ == "__main__":
    sys.exit(main())
