"""Numba CUDA activations against the CPU table (simulator without a GPU)."""

import numpy as np
import pytest
from numba_helpers import compare, nc

from kiln.backends.numba_cuda._common import SIMULATOR  # noqa: F401


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu(dtype):
    x = np.random.default_rng(0).standard_normal(37).astype(dtype)
    x[3] = np.nan
    compare("relu", x, np.empty_like(x))


def test_relu_rejects_host_arrays_and_mismatches():
    from numba import cuda

    x = cuda.to_device(np.ones(4, np.float32))
    with pytest.raises(TypeError, match="relu: x of shape .* host"):
        nc.relu(np.ones(4, np.float32), x)
    with pytest.raises(ValueError, match="relu: shape mismatch"):
        nc.relu(x, cuda.device_array(5, np.float32))
