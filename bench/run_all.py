"""Run every kiln benchmark and write bench/RESULTS.md (plus bench/results/*.json).

Order: the FMA peak (bench/peak.py, measured again unless --quick finds a cached one),
then one bench per kernel family (GEMM, activations, attention, convolution, norms and
pooling, losses, recurrent layers, optimizers), the per-op overhead and the end-to-end
training steps (bench_train_step.py), each at 1 and 2 threads in its own subprocesses.
The markdown starts with the machine, the library versions, the instruction set kiln
uses and the peak, then one table per bench and how to read them.

    python bench/run_all.py                # full run, several minutes
    python bench/run_all.py --quick        # smoke run, well under a minute per bench
    python bench/run_all.py --only conv,rnn  # a subset (matched on the script names)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as H
import bench_activation
import bench_attention  # attention
import bench_conv  # conv
import bench_ddp  # ddp
import bench_loss  # losses
import bench_matmul
import bench_norm_pool  # norm / pool / dropout
import bench_numba  # numba
import bench_optim  # optim
import bench_overhead
import bench_rnn  # rnn
import bench_train_step
import peak as P

HOW_TO_READ = """\
**How to read.** Every figure comes from one run on a shared, noisy 2-core virtual
machine: contenders run alternately in the same process (the first one rotating from
round to round), after warm-up, and the tables show medians (GFLOP/s, GB/s or µs from the
median time; kiln's best sample is in parentheses where shown). A ratio is
t_reference / t_kiln on medians, so **> 1 means kiln is faster**. "kiln" is the public
API on Tensors (Python op layer, output allocation, kernel); "kiln kernel" calls the
compiled kernel directly with a preallocated output, so the gap between the two is
kiln's Python-side cost. "other" is how many cores other processes kept busy while the
row was measured (0 = quiet, 2 = both cores taken): rows with a high value, above all
2-thread rows, are unreliable for every contender, because a 2-thread kernel waits for
its second thread to be scheduled. NumPy runs in the same process as kiln, so its
allocations also go through kiln's caching allocator (installed when kiln is imported).
"—" means not measured or missing (a kernel that raised is listed under the table)."""


def _git_rev() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=H.HERE,
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def header(peak: dict, payloads: list[dict], started: dict, wall_s: float) -> str:
    # the first bench that ran kiln in a per-thread child carries the library versions
    meta = next((p["runs"][0]["meta"] for p in payloads
                 if p.get("runs") and "meta" in p["runs"][0]), None)
    if meta is None:
        from kiln import __version__, _cpu

        meta = {"kiln": __version__, "kiln_isa": _cpu.get_isa(),
                "kiln_isa_supported": _cpu.supported_isa(), "numpy": "?", "torch": "?"}
    m = H.machine()
    lines = [
        "# kiln benchmarks", "",
        f"- Date: {started['date']} (suite took {wall_s / 60:.1f} min; kiln commit {_git_rev()})",
        f"- CPU: {m['cpu']}, {m['cores']} cores; {m['os']}",
        (f"- kiln {meta['kiln']} — instruction set in use: **{meta['kiln_isa']}** "
        f"(CPU supports {meta['kiln_isa_supported']})"),
        (f"- NumPy {meta['numpy']} (OpenBLAS), PyTorch {meta['torch']} (CPU), "
        f"Python {m['python']}"),
        f"- Load average (1, 5, 15 min) at start {started['loadavg']}, at end {m['loadavg']}",
        "",
        "## Peak", "",
    ]
    if peak.get("threads"):
        lines.append(f"fp32 FMA throughput from `bench/peak.py` ({peak['isa']}, "
                     f"`{peak['compile']}`): best rate per thread CPU-second "
                     "(unaffected by other processes) and best wall-clock rate.")
        lines.append("")
        rows = [[n, H.fmt(r["gflops"]), H.fmt(r["gflops_cpu_median"]),
                 H.fmt(r["gflops_wall_best"])] for n, r in peak["threads"].items()]
        lines.append(H.md_table(["threads", "peak GFLOP/s", "median", "best wall-clock"], rows))
    else:
        lines.append(f"Peak probe failed: {peak.get('error')}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smoke run with short budgets")
    p.add_argument("--big", action="store_true", help="add 4096³ to the GEMM bench")
    p.add_argument("--threads", type=H.threads_arg, default=[1, 2])
    p.add_argument("--out", type=Path, default=H.HERE / "RESULTS.md")
    p.add_argument("--only", default="", help="comma-separated bench names (e.g. conv,rnn)")
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    started = H.machine()
    H.log("peak")
    peak = P.load(force=not a.quick, quick=a.quick)
    benches = [
        ("GEMM (float32 matmul)", bench_matmul,
         lambda: bench_matmul.run(a.quick, a.big, a.threads)),
        ("Activations, softmax, cross-entropy (float32)", bench_activation,
         lambda: bench_activation.run(a.quick, a.threads)),
        # attention
        ("Fused attention (float32 SDPA)", bench_attention,
         lambda: bench_attention.run(a.quick, a.threads)),
        ("Per-op overhead (4×4 float32)", bench_overhead,
         lambda: bench_overhead.run(a.quick, a.threads)),
        # losses
        ("Losses, forward + backward (float32)", bench_loss,
         lambda: bench_loss.run(a.quick, a.threads)),
        # norm / pool / dropout
        ("Normalization, pooling, dropout (float32)", bench_norm_pool,
         lambda: bench_norm_pool.run(a.quick, a.threads)),
        # rnn
        ("Recurrent layers (LSTM, GRU, float32)", bench_rnn,
         lambda: bench_rnn.run(a.quick, a.threads)),
        # optim
        ("Optimizer steps (Adam, SGD momentum; float32)", bench_optim,
         lambda: bench_optim.run(a.quick, a.threads)),
        ("Training steps (MLP, LeNet-5, Transformer encoder layer; float32)", bench_train_step,
         lambda: bench_train_step.run(a.quick, a.threads)),
        # conv
        ("Convolutions (float32)", bench_conv, lambda: bench_conv.run(a.quick, a.threads)),
        # ddp
        ("Data-parallel training (DDP over MPI, LeNet-5, 1 vs 2 ranks)", bench_ddp,
         lambda: bench_ddp.run(a.quick)),
        # numba
        ("Numba CUDA fallback vs native kiln._cuda (GPU only)", bench_numba,
         lambda: bench_numba.run(a.quick)),
    ]
    if a.only:
        keep = [w.strip() for w in a.only.split(",") if w.strip()]
        benches = [b for b in benches if any(w in b[1].__name__ for w in keep)]
    payloads, sections = [], []
    for title, mod, fn in benches:
        H.log(f"{title}")
        tb = time.perf_counter()
        payload = fn()
        payloads.append(payload)
        sections.append(f"## {title}\n\n_{Path(mod.__file__).name}, "
                        f"{time.perf_counter() - tb:.0f} s_\n\n{mod.markdown(payload)}")
    wall = time.perf_counter() - t0
    md = "\n\n".join([header(peak, payloads, started, wall), HOW_TO_READ, *sections])
    if a.quick:
        md = md.replace("# kiln benchmarks", "# kiln benchmarks (--quick smoke run)", 1)
    a.out.write_text(md.rstrip() + "\n")
    H.save("all", {"peak": peak, "benches": payloads, "wall_s": wall})
    print(json.dumps({"wrote": str(a.out), "wall_s": round(wall, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
