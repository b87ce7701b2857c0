"""Seeds every test; helpers live in helpers.py.

The Numba CUDA table is tested in Numba's CUDA simulator unless a GPU is present:
NUMBA_ENABLE_CUDASIM must be set before numba is first imported, so it is set here,
before any test module loads. An explicit NUMBA_ENABLE_CUDASIM in the environment wins.
"""

import os

if "NUMBA_ENABLE_CUDASIM" not in os.environ and not os.path.exists("/dev/nvidiactl"):
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"

import pytest  # noqa: E402

import kiln  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    kiln.manual_seed(1234)
    try:
        import torch
    except ImportError:
        pass
    else:
        torch.manual_seed(1234)
    yield
