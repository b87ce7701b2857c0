"""The runnable examples in kiln's docstrings run and print what they say.

Every module of the package is collected (no list to keep in sync), except the
compiled extensions."""

import doctest
import importlib
import importlib.util
import pkgutil

import pytest

import kiln

# Modules that need an optional extra: skipped (with the reason) when it is missing.
OPTIONAL = {"kiln.backends.numba_cuda.": "numba", "kiln.distributed": "mpi4py",
            "kiln.nn.parallel": "mpi4py"}

MODULES = ["kiln"] + sorted(
    m.name for m in pkgutil.walk_packages(kiln.__path__, "kiln.")
    if not m.name.split(".")[-1].startswith(("_cpu", "_cuda"))
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    for prefix, dep in OPTIONAL.items():
        if name.startswith(prefix) and importlib.util.find_spec(dep) is None:
            pytest.skip(f"{name} needs {dep}")
    mod = importlib.import_module(name)
    result = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"
