"""The runnable examples in kiln.optim's and kiln.nn.utils' docstrings run and print what
they say (tests/test_docs.py covers the other public modules)."""

import doctest
import importlib

import pytest

MODULES = ["kiln.optim", "kiln.optim.optimizer", "kiln.optim.sgd", "kiln.optim.adam",
           "kiln.optim.rmsprop", "kiln.optim.adagrad", "kiln.optim.lr_scheduler",
           "kiln.optim._lr_composite", "kiln.nn.utils.clip_grad"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    mod = importlib.import_module(name)
    result = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"no examples in {name}"
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"
