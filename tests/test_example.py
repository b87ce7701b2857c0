"""The README example (examples/moons_mlp.py) runs and learns."""

import pathlib
import runpy


def test_moons_mlp_learns(capsys):
    path = pathlib.Path(__file__).parent.parent / "examples" / "moons_mlp.py"
    ns = runpy.run_path(str(path))
    out = capsys.readouterr().out
    assert "accuracy" in out
    assert ns["accuracy"] > 0.95, out
    assert ns["loss"].item() < 0.15, out
