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


def test_readme_shows_the_example_verbatim():
    # The README says examples/moons_mlp.py "is this script": keep the two from drifting.
    root = pathlib.Path(__file__).parent.parent
    readme = (root / "README.md").read_text()
    section = readme.split("## Example: a small MLP on two moons", 1)[1]
    snippet = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert snippet == (root / "examples" / "moons_mlp.py").read_text()
