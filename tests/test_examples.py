"""Every script in examples/ runs end to end with tiny settings (1-2 epochs, a few hundred
samples). Data that is not bundled is replaced by small synthetic files of the same format:
IDX files for Fashion-MNIST, an .npz for MNIST-1D, a text file for the Shakespeare corpus."""

import gzip
import importlib.util
import pathlib
import runpy
import struct
import sys

import numpy as np
import pytest

import kiln

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"
needs_conv = pytest.mark.skipif(not hasattr(kiln.nn, "Conv2d"), reason="kiln.nn.Conv2d missing")


def _run(monkeypatch, capsys, name, *argv):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    # the examples' `import _common` must find examples/_common.py, not a module of the
    # same name another test put in sys.modules (tests/mpi_workers/_common.py)
    monkeypatch.delitem(sys.modules, "_common", raising=False)
    monkeypatch.setattr(sys, "argv", [name, *argv])
    runpy.run_path(str(EXAMPLES / name), run_name="__main__")
    return capsys.readouterr().out


@pytest.fixture(scope="module")
def fashion_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("fmnist")
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 96), ("t10k", 40)):
        y = rng.integers(0, 10, n).astype(np.uint8)
        x = (rng.random((n, 28, 28)) * 60 + y[:, None, None] * 19).astype(np.uint8)
        for kind, arr in (("images-idx3", x), ("labels-idx1", y)):
            head = struct.pack(">HBB", 0, 8, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
            with gzip.open(root / f"{prefix}-{kind}-ubyte.gz", "wb") as f:
                f.write(head + arr.tobytes())
    return root


@pytest.fixture(scope="module")
def mnist1d_npz(tmp_path_factory):
    path = tmp_path_factory.mktemp("m1d") / "mnist1d.npz"
    rng = np.random.default_rng(0)
    y, yt = rng.integers(0, 10, 160), rng.integers(0, 10, 40)
    sig = lambda lab: (np.sin(np.arange(40)[None] * (lab[:, None] + 1) / 6)
                       + 0.1 * rng.standard_normal((len(lab), 40)))
    np.savez(path, x=sig(y), y=y, x_test=sig(yt), y_test=yt)
    return path


def test_mlp_digits(monkeypatch, capsys, tmp_path):
    out = _run(monkeypatch, capsys, "mlp_digits.py", "--epochs", "2", "--out", str(tmp_path))
    acc = float(out.split("test accuracy ")[1].split(",")[0])
    assert acc > 0.6, out


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_rnn_mnist1d(monkeypatch, capsys, mnist1d_npz, cell):
    out = _run(monkeypatch, capsys, "rnn_mnist1d.py", "--cell", cell, "--epochs", "1",
               "--hidden", "16", "--data", str(mnist1d_npz))
    assert f"{cell.upper()} on MNIST-1D" in out and "test accuracy" in out


@needs_conv
def test_conv1d_mnist1d(monkeypatch, capsys, mnist1d_npz):
    out = _run(monkeypatch, capsys, "conv1d_mnist1d.py", "--epochs", "1",
               "--data", str(mnist1d_npz))
    assert "conv1d on MNIST-1D" in out


@needs_conv
def test_lenet5_fashion_mnist(monkeypatch, capsys, fashion_dir):
    out = _run(monkeypatch, capsys, "lenet5_fashion_mnist.py", "--epochs", "1",
               "--data", str(fashion_dir))
    assert "LeNet-5 on Fashion-MNIST" in out


@needs_conv
def test_denoising_autoencoder(monkeypatch, capsys, fashion_dir, tmp_path):
    out = _run(monkeypatch, capsys, "denoising_autoencoder_fashion_mnist.py", "--epochs", "1",
               "--data", str(fashion_dir), "--out", str(tmp_path))
    png = (tmp_path / "denoise.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and "test MSE" in out


@needs_conv
def test_dcgan_digits(monkeypatch, capsys, tmp_path):
    out = _run(monkeypatch, capsys, "dcgan_digits.py", "--epochs", "1", "--limit", "128",
               "--out", str(tmp_path))
    assert (tmp_path / "gan_samples.png").read_bytes()[:4] == b"\x89PNG"
    assert "classes covered" in out


@needs_conv
def test_transfer_learning(monkeypatch, capsys, tmp_path):
    out = _run(monkeypatch, capsys, "transfer_learning.py", "--epochs", "2", "--shots", "4",
               "--out", str(tmp_path))
    assert "All keys matched successfully" in out and "fine-tuned head" in out


def test_char_transformer(monkeypatch, capsys, tmp_path):
    text = tmp_path / "tiny.txt"
    text.write_text("ROMEO.\nBut soft, what light through yonder window breaks?\n" * 30)
    out = _run(monkeypatch, capsys, "char_transformer_shakespeare.py", "--text", str(text),
               "--steps", "3", "--block", "16", "--d-model", "32", "--layers", "1",
               "--sample", "20", "--batch-size", "4", "--torch")
    assert "--- sample ---" in out and "validation loss ratio" in out


# ddp
@needs_conv
def test_ddp_fashion_mnist(monkeypatch, capsys, fashion_dir, tmp_path):
    """One process in this one; with Open MPI, 2 ranks under mpirun too: the same global
    batches, so the same curves (up to summation order) and the same test accuracy."""
    import json
    import os
    import shutil
    import subprocess

    args = ["--epochs", "2", "--batch-size", "16", "--data", str(fashion_dir)]
    one = tmp_path / "one"
    one.mkdir()
    out = _run(monkeypatch, capsys, "ddp_fashion_mnist.py", *args, "--out", str(one))
    assert "1 rank(s) x batch 16 = global batch 16" in out, out
    h1 = json.loads((one / "ddp_history.json").read_text())
    assert (one / "ddp_lenet5.safetensors").exists()
    if shutil.which("mpirun") is None or importlib.util.find_spec("mpi4py") is None:
        pytest.skip("2-rank run needs mpirun and mpi4py")
    two = tmp_path / "two"
    two.mkdir()
    src = str(pathlib.Path(kiln.__file__).resolve().parent.parent)  # the kiln under test
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]),
               OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    proc = subprocess.run(["mpirun", "-n", "2", "--oversubscribe", sys.executable,
                           str(EXAMPLES / "ddp_fashion_mnist.py"), *args, "--out", str(two)],
                          env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("LeNet-5 on Fashion-MNIST") == 1  # rank 0 alone prints
    assert "2 rank(s) x batch 8 = global batch 16" in proc.stdout
    h2 = json.loads((two / "ddp_history.json").read_text())
    np.testing.assert_allclose(h2["train_loss"], h1["train_loss"], rtol=1e-4)
    np.testing.assert_allclose(h2["val_loss"], h1["val_loss"], rtol=1e-4)
    assert h2["val_accuracy"] == h1["val_accuracy"]
