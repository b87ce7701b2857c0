"""The README's GPU snippet runs (on the Numba table, in the simulator without a GPU) and
computes what it says: out = relu(a @ b)."""

import pathlib
import re

import numpy as np
from numba_helpers import nc  # noqa: F401  (skips without numba)


def test_readme_gpu_snippet():
    text = (pathlib.Path(__file__).parent.parent / "README.md").read_text()
    section = text[text.index("## GPU: the CUDA kernel tables"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    ns: dict = {}
    exec(compile(code, "README.md (GPU)", "exec"), ns)
    a, b, out = (ns[n].copy_to_host() for n in ("a", "b", "out"))
    np.testing.assert_allclose(out, np.maximum(a @ b, 0), rtol=1e-5)
    from kiln import backends

    assert backends.which("matmul") in ("kiln._cuda", "kiln.backends.numba_cuda")
