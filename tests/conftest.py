"""Seeds every test; helpers live in helpers.py."""

import pytest

import kiln


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
