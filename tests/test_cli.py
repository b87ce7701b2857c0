"""The kiln command: train (tiny) / evaluate round trip, info, bench's message."""

import argparse
import json

import pytest

import kiln
from kiln import cli


def test_train_then_evaluate_mlp(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["train", "--model", "mlp", "--epochs", "2", "--out", str(out),
                     "--quiet"]) == 0
    text = capsys.readouterr().out
    acc = float(text.split("test accuracy: ")[1].split()[0])
    assert acc > 0.7, text
    assert "confusion matrix" in text
    for f in ("model.safetensors", "checkpoint.safetensors", "history.json", "curves.png"):
        assert (out / f).exists(), f
    assert len(json.loads((out / "history.json").read_text())["epoch"]) == 2
    assert cli.main(["evaluate", str(out / "model.safetensors")]) == 0
    assert f"test accuracy: {acc:.4f}" in capsys.readouterr().out


@pytest.mark.parametrize("model", ["lstm", "transformer"])
def test_train_sequence_models_run(tmp_path, capsys, model):
    assert cli.main(["train", "--model", model, "--epochs", "1", "--out", str(tmp_path),
                     "--quiet"]) == 0
    assert "test accuracy" in capsys.readouterr().out


def test_bad_data_and_info(capsys):
    with pytest.raises(SystemExit, match="--data must be"):
        cli.main(["train", "--data", "no-such-thing", "--quiet"])
    assert cli.main(["info"]) == 0
    assert "instruction set" in capsys.readouterr().out


def test_bench_finds_checkout_then_installed_copy(tmp_path, monkeypatch):
    from kiln.cli import _find_bench

    monkeypatch.chdir(tmp_path)
    pkg = tmp_path / "site" / "kiln"
    (pkg / "bench").mkdir(parents=True)
    assert _find_bench(pkg) == (None, False)
    (pkg / "bench" / "run_all.py").write_text("")
    assert _find_bench(pkg) == (pkg / "bench" / "run_all.py", True)
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "run_all.py").write_text("")  # a checkout in the working folder wins
    assert _find_bench(pkg) == (tmp_path / "bench" / "run_all.py", False)


# launch
def test_launch_dry_run_command_line(tmp_path, monkeypatch, capsys):
    import os
    import shutil
    import sys

    script = tmp_path / "train.py"
    script.write_text("")
    hosts = tmp_path / "hosts"
    hosts.write_text("node1 slots=2\n")
    monkeypatch.setattr(shutil, "which", lambda name: "/opt/mpi/bin/mpirun")
    monkeypatch.setenv("PYTHONPATH", "/src")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert cli.main(["launch", "-n", "3", "--hostfile", str(hosts), "--oversubscribe",
                     "--mca", "btl_tcp_if_include", "eth0", "--threads", "1", "--dry-run",
                     str(script), "--epochs", "2", "-v"]) == 0
    root = ["--allow-run-as-root"] if os.geteuid() == 0 else []
    assert capsys.readouterr().out.split() == [
        "/opt/mpi/bin/mpirun", "-n", "3", *root, "--hostfile", str(hosts), "--oversubscribe",
        "--mca", "btl_tcp_if_include", "eth0",
        "-x", "PYTHONPATH", "-x", "OMP_NUM_THREADS=1", sys.executable, str(script),
        "--epochs", "2", "-v"]
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert cli.main(["launch", "-n", "2", "--dry-run", str(script)]) == 0
    assert capsys.readouterr().out.split()[:4] == ["/opt/mpi/bin/mpirun", "-n", "2",
                                                   "--allow-run-as-root"]
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    ns = argparse.Namespace(n=2, hostfile=None, oversubscribe=False, threads=0, script="s.py",
                            script_args=[])
    assert cli.launch_command(ns, "mpirun") == ["mpirun", "-n", "2", "-x", "PYTHONPATH",
                                                sys.executable, "s.py"]


def test_launch_errors(tmp_path, monkeypatch, capsys):
    import shutil

    script = tmp_path / "train.py"
    script.write_text("")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert cli.main(["launch", "-n", "2", str(script)]) == 2
    err = capsys.readouterr().err
    assert "`mpirun` was not found" in err and "apt-get install openmpi-bin libopenmpi-dev" in err
    assert "kiln[distributed]" in err
    assert cli.main(["launch", "-n", "2", str(tmp_path / "missing.py")]) == 2
    assert "not found" in capsys.readouterr().err
    assert cli.main(["launch", "-n", "0", str(script)]) == 2
    assert "-n must be >= 1" in capsys.readouterr().err


def test_launch_runs_ranks(tmp_path):
    import os
    import shutil
    import subprocess
    import sys

    if shutil.which("mpirun") is None:
        pytest.skip("mpirun (Open MPI) is not installed")
    pytest.importorskip("mpi4py")
    script = tmp_path / "hello.py"
    # each rank writes a file (the ranks' stdout interleaves when it is unbuffered)
    script.write_text("from mpi4py import MPI\nimport pathlib, sys\nc = MPI.COMM_WORLD\n"
                      "pathlib.Path(sys.argv[1], f'rank{c.Get_rank()}').write_text("
                      "f'{c.Get_rank()} of {c.Get_size()} {sys.argv[2]}')\n")
    # the kiln this test imported (the source tree in a dev checkout, site-packages when
    # installed): its parent folder, so the ranks import the same, built package
    src = os.path.dirname(os.path.dirname(os.path.abspath(kiln.__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-m", "kiln.cli", "launch", "-n", "2",
                          "--oversubscribe", str(script), str(tmp_path), "x"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert [(tmp_path / f"rank{r}").read_text() for r in (0, 1)] == ["0 of 2 x", "1 of 2 x"]
