"""kiln.train.fit on 2 MPI ranks (mpirun -n 2 tests/_dist_fit_worker.py) against the same
run in one process: identical History on every rank, equal to the single-process one (the
global batches are the same), the same early stop, the same weights, progress and
checkpoints from rank 0 only, and a checkpoint that loads into the plain model."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import kiln
from kiln import nn

HERE = Path(__file__).resolve().parent
WORKER = HERE / "_dist_fit_worker.py"
pytestmark = [
    pytest.mark.skipif(shutil.which("mpirun") is None, reason="mpirun (Open MPI) not installed"),
    pytest.mark.skipif(importlib.util.find_spec("mpi4py") is None, reason="mpi4py not installed"),
]
HAS_DDP = importlib.util.find_spec("kiln.nn.parallel") is not None


def _env() -> dict:
    src = str(Path(kiln.__file__).resolve().parent.parent)  # the kiln under test
    return dict(os.environ, PYTHONPATH=os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]),
                OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
                OMP_NUM_THREADS="1")


def _run(out: Path, mode: str, ranks: int) -> list[dict]:
    out.mkdir()
    cmd = [sys.executable, str(WORKER), str(out), mode]
    if ranks > 1:
        cmd = ["mpirun", "-n", str(ranks), "--oversubscribe"] + cmd
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(ranks)]


def test_fit_two_ranks_matches_one_process(tmp_path):
    # with DistributedDataParallel; without it (a build before kiln.nn.parallel), a plain
    # model whose optimizer averages the gradients, which exercises fit the same way
    mode = "ddp" if HAS_DDP else "avg"
    (one,) = _run(tmp_path / "one", mode, 1)
    r0, r1 = _run(tmp_path / "two", mode, 2)
    assert one["world"] == 1 and r0["world"] == r1["world"] == 2
    # every rank returns the same History (the epoch time included: the slowest rank's)
    assert r0["history"] == r1["history"] and r0["time"] == r1["time"]
    h1, h2 = one["history"], r0["history"]
    epochs = len(h1["epoch"])
    assert 2 < epochs < 12, "early stopping should end the run early"  # a real decision
    assert h2["epoch"] == h1["epoch"] and r0["stopped_epoch"] == one["stopped_epoch"]
    for k in ("train_loss", "val_loss"):
        np.testing.assert_allclose(h2[k], h1[k], rtol=1e-5, err_msg=k)
    for k in ("train_accuracy", "val_accuracy"):
        assert h2[k] == h1[k], k
    assert h2["val_n_val"] == [32.0] * epochs  # custom metrics see the whole val set
    for k, w in one["weights"].items():
        assert r0["weights"][k] == r1["weights"][k], k  # replicas stay identical
        np.testing.assert_allclose(r0["weights"][k], w, rtol=1e-4, atol=1e-6, err_msg=k)
    # rank 0 alone shows progress and writes the checkpoint, every epoch
    assert r0["saves"] == epochs and r1["saves"] == 0
    assert "epoch 1/12" in r0["stderr"] and r1["stderr"] == ""
    assert r1["eval_full"] is None and r0["eval_sharded"] == r1["eval_sharded"]
    for k in ("loss", "accuracy"):  # rank 0 alone on all of val = the ranks' shards combined
        np.testing.assert_allclose(r0["eval_full"][k], r0["eval_sharded"][k], rtol=1e-6)
        np.testing.assert_allclose(r0["eval_full"][k], one["eval_sharded"][k], rtol=1e-5)
    # an interrupted 2-rank run resumed from its checkpoint (every rank's RNG restored)
    assert one["resume_exact"] and r0["resume_exact"] and r1["resume_exact"]
    assert r0["sampler_epoch"] == r1["sampler_epoch"] == epochs - 1  # set_epoch each epoch
    # the checkpoint holds the plain module's state
    ckpt = kiln.load(tmp_path / "two" / "ckpt.safetensors")
    plain = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))
    plain.load_state_dict(ckpt["model"])
    for k, v in plain.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), np.asarray(r0["weights"][k], np.float32))
    assert len(ckpt["rank_rng"]) == 2 and ckpt["epoch"] == epochs - 1
