"""The kiln command: train (tiny) / evaluate round trip, info, bench's message."""

import json

import pytest

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
