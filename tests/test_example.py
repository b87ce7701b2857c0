"""The README example (examples/moons_mlp.py) runs and learns."""

import pathlib
import runpy


def test_moons_mlp_learns(capsys, tmp_path, monkeypatch):
    path = pathlib.Path(__file__).parent.parent / "examples" / "moons_mlp.py"
    monkeypatch.chdir(tmp_path)  # the script saves moons.safetensors in the working folder
    ns = runpy.run_path(str(path))
    out = capsys.readouterr().out
    assert "accuracy" in out
    assert ns["accuracy"] > 0.95, out
    assert ns["loss"].item() < 0.15, out
    import kiln

    saved = kiln.load(tmp_path / "moons.safetensors")
    assert sorted(saved) == ["0.bias", "0.weight", "2.bias", "2.weight"]
