"""The docstring examples of the norm / pool / dropout modules run and print what they say."""

import doctest
import importlib

import pytest

MODULES = ["kiln.ops.norm", "kiln.ops.dropout", "kiln.ops.pool", "kiln.nn.normalization",
           "kiln.nn.pooling", "kiln.nn.dropout"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    mod = importlib.import_module(name)
    result = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0, f"{result.failed} failed in {name}"
