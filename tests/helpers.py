"""Test helpers: conversion to PyTorch and tolerance checks."""

import numpy as np
import pytest

import kiln

torch = pytest.importorskip("torch")


def to_torch(t, requires_grad=None):
    arr = np.array(t.data if isinstance(t, kiln.Tensor) else t, copy=True)
    out = torch.from_numpy(arr)
    if requires_grad if requires_grad is not None else getattr(t, "requires_grad", False):
        out.requires_grad_(True)
    return out


def assert_close(actual, expected, rtol=1e-5, atol=None, what=""):
    """|a - e| <= rtol * |e| + atol elementwise. atol defaults to 0.1 * rtol * max|e|:
    floating-point sums cancel, so an element near zero is judged against the tensor's
    scale, not its own."""
    a = np.asarray(actual.detach().numpy() if hasattr(actual, "detach") else actual,
                   dtype=np.float64)
    e = np.asarray(expected.detach().numpy() if hasattr(expected, "detach") else expected,
                   dtype=np.float64)
    assert a.shape == e.shape, f"{what}: shape {a.shape} != {e.shape}"
    if atol is None:
        finite = np.abs(e[np.isfinite(e)])
        atol = rtol * 0.1 * (finite.max() if finite.size else 1.0) + 1e-30
    assert (np.isnan(a) == np.isnan(e)).all(), f"{what}: NaN pattern differs"
    ok = np.isclose(a, e, rtol=rtol, atol=atol, equal_nan=True)
    if not ok.all():
        i = np.unravel_index(np.argmax(~ok), ok.shape)
        raise AssertionError(
            f"{what}: mismatch at {i}: kiln {a[i]!r} vs torch {e[i]!r} "
            f"({(~ok).sum()} of {ok.size} elements; rtol {rtol}, atol {atol:.3g})"
        )
