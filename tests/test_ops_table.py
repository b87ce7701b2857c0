"""The op table: every op's forward value and gradient against PyTorch 2.13 CPU (float32,
1e-5 relative), and against float64 central finite differences (kiln.autograd.gradcheck).

One row per op: (id, kiln fn, torch fn, input shapes, input domain). Each row runs on
contiguous inputs, on non-contiguous (transposed-view) inputs and, where it makes
sense, on zero-size inputs.
"""

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import kiln
import kiln.nn.functional as F

from helpers import assert_close


@dataclass
class Row:
    id: str
    k: Callable
    t: Callable
    shapes: list
    domain: str = "real"  # real | positive | unit (-0.9..0.9) | nonzero
    grad: bool = True
    rtol: float = 1e-5
    zero_size: bool = True
    extra: dict = field(default_factory=dict)


def _sample(shape, domain, dtype):
    rng = np.random.default_rng(zlib.crc32(repr((shape, domain)).encode()))
    x = rng.standard_normal(shape)
    if domain == "positive":
        x = np.abs(x) + 0.5
    elif domain == "unit":
        x = np.tanh(x) * 0.9
    elif domain == "nonzero":
        x = np.sign(x) * (np.abs(x) + 0.5)
    elif domain == "wide":
        x = x * 4
    return x.astype(dtype)


B = [(3, 4), (3, 4)]
ROWS = [
    # elementwise arithmetic with broadcasting
    Row("add", lambda a, b: a + b, lambda a, b: a + b, B),
    Row("add_broadcast", lambda a, b: a + b, lambda a, b: a + b, [(2, 3, 4), (4,)]),
    Row("add_broadcast2", lambda a, b: kiln.add(a, b, alpha=2), lambda a, b: torch.add(a, b, alpha=2),
        [(3, 1), (1, 4)]),
    Row("sub", lambda a, b: a - b, lambda a, b: a - b, [(2, 3, 4), (3, 1)]),
    Row("rsub_scalar", lambda a: 2.5 - a, lambda a: 2.5 - a, [(3, 4)]),
    Row("mul", lambda a, b: a * b, lambda a, b: a * b, [(2, 3, 4), (1, 4)]),
    Row("mul_scalar", lambda a: a * 3.0, lambda a: a * 3.0, [(5,)]),
    Row("div", lambda a, b: a / b, lambda a, b: a / b, [(3, 4), (4,)], domain="nonzero"),
    Row("rdiv_scalar", lambda a: 2.0 / a, lambda a: 2.0 / a, [(3, 4)], domain="nonzero"),
    Row("pow_scalar", lambda a: a ** 3, lambda a: a ** 3, [(3, 4)]),
    Row("pow_tensor", lambda a, b: a ** b, lambda a, b: a ** b, [(3, 4), (3, 4)], domain="positive"),
    Row("rpow", lambda a: 2.0 ** a, lambda a: 2.0 ** a, [(3, 4)]),
    Row("neg", lambda a: -a, lambda a: -a, [(3, 4)]),
    Row("exp", lambda a: a.exp(), lambda a: a.exp(), [(3, 4)]),
    Row("log", lambda a: a.log(), lambda a: a.log(), [(3, 4)], domain="positive"),
    Row("log1p", lambda a: a.log1p(), lambda a: a.log1p(), [(3, 4)], domain="positive"),
    Row("sqrt", lambda a: a.sqrt(), lambda a: a.sqrt(), [(3, 4)], domain="positive"),
    Row("rsqrt", lambda a: a.rsqrt(), lambda a: a.rsqrt(), [(3, 4)], domain="positive"),
    Row("abs", lambda a: a.abs(), lambda a: a.abs(), [(3, 4)], domain="nonzero"),
    Row("sin", lambda a: a.sin(), lambda a: a.sin(), [(3, 4)]),
    Row("cos", lambda a: a.cos(), lambda a: a.cos(), [(3, 4)]),
    Row("reciprocal", lambda a: a.reciprocal(), lambda a: a.reciprocal(), [(3, 4)], domain="nonzero"),
    Row("clamp", lambda a: a.clamp(-0.5, 0.7), lambda a: a.clamp(-0.5, 0.7), [(4, 5)]),
    Row("maximum", kiln.maximum, torch.maximum, [(3, 4), (4,)]),
    Row("minimum", kiln.minimum, torch.minimum, [(3, 4), (3, 4)]),
    Row("where", lambda a, b: kiln.where(a > 0, a, b), lambda a, b: torch.where(a > 0, a, b), [(3, 4), (4,)]),
    # reductions
    Row("sum", lambda a: a.sum(), lambda a: a.sum(), [(3, 4)]),
    Row("sum_dim", lambda a: a.sum(1), lambda a: a.sum(1), [(2, 3, 4)]),
    Row("sum_dims_keepdim", lambda a: a.sum((0, 2), keepdim=True), lambda a: a.sum((0, 2), keepdim=True), [(2, 3, 4)]),
    Row("mean", lambda a: a.mean(), lambda a: a.mean(), [(3, 4)], zero_size=False),
    Row("mean_dim", lambda a: a.mean(-1, keepdim=True), lambda a: a.mean(-1, keepdim=True), [(2, 3, 4)]),
    Row("var", lambda a: a.var(), lambda a: a.var(), [(3, 4)], zero_size=False),
    Row("var_dim", lambda a: a.var(1, correction=0), lambda a: a.var(1, correction=0), [(2, 5, 3)]),
    Row("std_dim", lambda a: a.std(0, keepdim=True), lambda a: a.std(0, keepdim=True), [(5, 3)]),
    Row("max_all", lambda a: a.max(), lambda a: a.max(), [(3, 4)], zero_size=False),
    Row("max_dim", lambda a: a.max(1)[0], lambda a: a.max(1)[0], [(3, 4, 2)]),
    Row("max_dim_indices", lambda a: a.max(1, keepdim=True)[1], lambda a: a.max(1, keepdim=True)[1],
        [(3, 4)], grad=False),
    Row("min_dim", lambda a: a.min(0).values, lambda a: a.min(0).values, [(3, 4)]),
    Row("min_all", lambda a: a.min(), lambda a: a.min(), [(3, 4)], zero_size=False),
    Row("amax", lambda a: a.amax(1), lambda a: a.amax(1), [(3, 4)]),
    Row("argmax", lambda a: a.argmax(1), lambda a: a.argmax(1), [(3, 4)], grad=False),
    Row("argmin", lambda a: a.argmin(), lambda a: a.argmin(), [(3, 4)], grad=False, zero_size=False),
    Row("prod", lambda a: a.prod(1), lambda a: a.prod(1), [(3, 4)]),
    Row("prod_all", lambda a: a.prod(), lambda a: a.prod(), [(2, 3)]),
    Row("logsumexp", lambda a: a.logsumexp(1), lambda a: a.logsumexp(1), [(3, 4)], domain="wide"),
    # comparisons (no gradient)
    Row("eq", lambda a, b: a == b, lambda a, b: a == b, B, grad=False),
    Row("lt", lambda a, b: a < b, lambda a, b: a < b, B, grad=False),
    Row("ge", lambda a, b: a >= b, lambda a, b: a >= b, [(3, 4), (4,)], grad=False),
    # movement
    Row("reshape", lambda a: a.reshape(4, -1), lambda a: a.reshape(4, -1), [(2, 3, 4)]),
    Row("view", lambda a: a.contiguous().view(6, 4), lambda a: a.contiguous().view(6, 4), [(2, 3, 4)]),
    Row("transpose", lambda a: a.transpose(0, 2), lambda a: a.transpose(0, 2), [(2, 3, 4)]),
    Row("permute", lambda a: a.permute(2, 0, 1), lambda a: a.permute(2, 0, 1), [(2, 3, 4)]),
    Row("expand", lambda a: a.expand(2, 3, 4), lambda a: a.expand(2, 3, 4), [(3, 1)]),
    Row("unsqueeze", lambda a: a.unsqueeze(1), lambda a: a.unsqueeze(1), [(3, 4)]),
    Row("squeeze", lambda a: a.squeeze(), lambda a: a.squeeze(), [(3, 1, 4)]),
    Row("squeeze_dim", lambda a: a.squeeze(1), lambda a: a.squeeze(1), [(3, 1, 4)]),
    Row("flatten", lambda a: a.flatten(1), lambda a: a.flatten(1), [(2, 3, 4)]),
    Row("cat", lambda a, b: kiln.cat([a, b], 1), lambda a, b: torch.cat([a, b], 1), [(2, 3), (2, 5)]),
    Row("stack", lambda a, b: kiln.stack([a, b], -1), lambda a, b: torch.stack([a, b], -1), B),
    Row("split", lambda a: a.split(2, 1)[1], lambda a: a.split(2, 1)[1], [(3, 5)]),
    Row("split_sections", lambda a: a.split([1, 3], 0)[1], lambda a: a.split([1, 3], 0)[1], [(4, 3)]),
    Row("chunk", lambda a: a.chunk(3, 1)[2], lambda a: a.chunk(3, 1)[2], [(2, 7)]),
    Row("pad", lambda a: F.pad(a, (1, 2, 0, 1)), lambda a: TF.pad(a, (1, 2, 0, 1)), [(2, 3, 4)]),
    Row("pad_value", lambda a: F.pad(a, (2, 1), value=3.0), lambda a: TF.pad(a, (2, 1), value=3.0), [(3, 4)]),
    Row("pad_reflect", lambda a: F.pad(a, (2, 1), mode="reflect"),
        lambda a: TF.pad(a, (2, 1), mode="reflect"), [(2, 3, 4)], zero_size=False),
    Row("pad_replicate", lambda a: F.pad(a, (1, 3), mode="replicate"),
        lambda a: TF.pad(a, (1, 3), mode="replicate"), [(2, 3, 4)], zero_size=False),
    Row("flip", lambda a: a.flip((0, 2)), lambda a: a.flip((0, 2)), [(2, 3, 4)]),
    Row("index_basic", lambda a: a[1:, ::2, 0], lambda a: a[1:, ::2, 0], [(3, 4, 5)], zero_size=False),
    Row("index_int_array", lambda a: a[kiln.tensor([0, 2, 0])], lambda a: a[torch.tensor([0, 2, 0])],
        [(3, 4)], zero_size=False),
    Row("index_2_arrays", lambda a: a[kiln.tensor([0, 2]), kiln.tensor([1, 1])],
        lambda a: a[torch.tensor([0, 2]), torch.tensor([1, 1])], [(3, 4)], zero_size=False),
    Row("index_bool", lambda a: a[a > 0], lambda a: a[a > 0], [(3, 4)]),
    Row("index_none_ellipsis", lambda a: a[None, ..., 1], lambda a: a[None, ..., 1], [(3, 4)], zero_size=False),
    # matmul and linear (more shapes in test_matmul.py)
    Row("matmul", lambda a, b: a @ b, lambda a, b: a @ b, [(5, 7), (7, 3)], rtol=1e-5),
    Row("matmul_batched", lambda a, b: a @ b, lambda a, b: a @ b, [(2, 1, 5, 7), (3, 7, 4)]),
    Row("matmul_vec", lambda a, b: a @ b, lambda a, b: a @ b, [(7,), (2, 7, 3)]),
    Row("linear", lambda x, w, b: F.linear(x, w, b), lambda x, w, b: TF.linear(x, w, b), [(2, 5, 7), (4, 7), (4,)]),
    Row("linear_nobias", lambda x, w: F.linear(x, w), lambda x, w: TF.linear(x, w), [(5, 7), (4, 7)]),
    Row("linear_relu", lambda x, w, b: F.linear(x, w, b, activation="relu"),
        lambda x, w, b: TF.relu(TF.linear(x, w, b)), [(6, 7), (4, 7), (4,)]),
    Row("linear_gelu", lambda x, w, b: F.linear(x, w, b, activation="gelu"),
        lambda x, w, b: TF.gelu(TF.linear(x, w, b)), [(6, 7), (4, 7), (4,)]),
    # activations
    Row("relu", F.relu, TF.relu, [(4, 5)]),
    Row("leaky_relu", lambda a: F.leaky_relu(a, 0.2), lambda a: TF.leaky_relu(a, 0.2), [(4, 5)]),
    Row("sigmoid", F.sigmoid, torch.sigmoid, [(4, 5)], domain="wide"),
    Row("tanh", F.tanh, torch.tanh, [(4, 5)], domain="wide"),
    Row("gelu", F.gelu, TF.gelu, [(4, 5)], domain="wide"),
    Row("gelu_tanh", lambda a: F.gelu(a, approximate="tanh"), lambda a: TF.gelu(a, approximate="tanh"),
        [(4, 5)], domain="wide"),
    Row("silu", F.silu, TF.silu, [(4, 5)], domain="wide"),
    Row("softplus", F.softplus, TF.softplus, [(4, 5)], domain="wide"),
    Row("softplus_beta", lambda a: F.softplus(a, beta=2.0, threshold=5.0),
        lambda a: TF.softplus(a, beta=2.0, threshold=5.0), [(4, 5)], domain="wide"),
    Row("elu", F.elu, TF.elu, [(4, 5)], domain="wide"),
    Row("softmax", lambda a: F.softmax(a, 1), lambda a: TF.softmax(a, 1), [(3, 5, 2)], domain="wide"),
    Row("softmax_last", lambda a: a.softmax(-1), lambda a: a.softmax(-1), [(3, 5)]),
    Row("softmax_first", lambda a: F.softmax(a, 0), lambda a: TF.softmax(a, 0), [(3, 5, 2)]),
    Row("log_softmax", lambda a: F.log_softmax(a, 1), lambda a: TF.log_softmax(a, 1), [(3, 5, 2)], domain="wide"),
    Row("log_softmax_last", lambda a: a.log_softmax(-1), lambda a: a.log_softmax(-1), [(4, 6)]),
    # losses
    Row("mse_loss", F.mse_loss, TF.mse_loss, [(4, 3), (4, 3)], zero_size=False),
    Row("l1_loss", F.l1_loss, TF.l1_loss, [(4, 3), (4, 3)], zero_size=False),
    Row("bce_with_logits", lambda a, b: F.binary_cross_entropy_with_logits(a, b.sigmoid()),
        lambda a, b: TF.binary_cross_entropy_with_logits(a, b.sigmoid()), [(4, 3), (4, 3)],
        zero_size=False),
]


def _inputs(row, dtype, noncontig=False, zero=False):
    ks, ts = [], []
    top = max(len(s) for s in row.shapes)
    for shape in row.shapes:
        shape = tuple(shape)
        if zero and len(shape) == top:  # lower-rank inputs broadcast against the empty one
            shape = (0,) + shape[1:]
        arr = _sample(shape, row.domain, dtype)
        if noncontig and arr.ndim >= 2:
            arr = np.ascontiguousarray(np.swapaxes(arr, -1, -2)).swapaxes(-1, -2)
            assert not arr.flags.c_contiguous or min(arr.shape[-2:]) <= 1
        k = kiln.from_numpy(arr).requires_grad_(row.grad)
        t = torch.from_numpy(arr.copy()).requires_grad_(row.grad)
        ks.append(k)
        ts.append(t)
    return ks, ts


def _check(row, noncontig=False, zero=False):
    ks, ts = _inputs(row, np.float32, noncontig, zero)
    ko = row.k(*ks)
    to = row.t(*ts)
    assert tuple(ko.shape) == tuple(to.shape), f"{row.id}: shape {ko.shape} vs {tuple(to.shape)}"
    if to.dtype == torch.bool or to.dtype == torch.int64:
        np.testing.assert_array_equal(ko.numpy(force=True), to.numpy())
        return
    assert ko.dtype == kiln.float32
    assert_close(ko, to, rtol=row.rtol, what=f"{row.id} forward")
    if not row.grad:
        return
    seed = np.random.default_rng(7).standard_normal(tuple(to.shape)).astype(np.float32)
    (ko * kiln.from_numpy(seed)).sum().backward()
    (to * torch.from_numpy(seed)).sum().backward()
    for i, (k, t) in enumerate(zip(ks, ts)):
        if t.grad is None:
            assert k.grad is None or not np.any(k.grad.numpy()), f"{row.id}: unexpected grad"
            continue
        assert k.grad is not None, f"{row.id}: no gradient for input {i}"
        assert_close(k.grad, t.grad, rtol=row.rtol, what=f"{row.id} grad[{i}]")


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_vs_torch(row):
    _check(row)


@pytest.mark.parametrize("row", [r for r in ROWS if any(len(s) >= 2 for s in r.shapes)],
                         ids=lambda r: r.id)
def test_vs_torch_noncontiguous(row):
    _check(row, noncontig=True)


@pytest.mark.parametrize("row", [r for r in ROWS if r.zero_size], ids=lambda r: r.id)
def test_vs_torch_zero_size(row):
    """Zero-size inputs: the same values and gradients as torch; where torch rejects the
    (shape-specific) empty input, kiln must reject it too, with a Python exception."""
    _, ts = _inputs(row, np.float32, zero=True)
    try:
        row.t(*ts)
    except (RuntimeError, ValueError, IndexError):
        ks, _ = _inputs(row, np.float32, zero=True)
        with pytest.raises((RuntimeError, ValueError, IndexError)):
            row.k(*ks)
        return
    _check(row, zero=True)


@pytest.mark.parametrize("row", [r for r in ROWS if r.grad], ids=lambda r: r.id)
def test_gradcheck_float64(row):
    if row.id in ("max_all", "min_all", "amax"):
        pass  # no ties in random data: the subgradient is the plain derivative
    ks, _ = _inputs(row, np.float64)
    assert kiln.autograd.gradcheck(row.k, ks, eps=1e-6, atol=1e-6, rtol=1e-4)
