"""The runnable examples in kiln's docstrings run and print what they say."""

import doctest
import importlib

import pytest

MODULES = ["kiln", "kiln.tensor", "kiln.autograd", "kiln.creation", "kiln.nn.functional",
           "kiln.ops.matmul", "kiln.ops.elementwise", "kiln.ops.activation", "kiln.ops.reduce",
           "kiln.ops.movement", "kiln.ops.indexing", "kiln.ops.loss"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    mod = importlib.import_module(name)
    result = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"
