"""Tests of the AVX-512 small-product tiles of kiln._cpu.matmul (gemm_avx512.cpp):
products whose k x N of B fits 64 KiB run a 6 x 64, 8 x 48 or 8 x 32 tile, picked by
which pads N least; larger ones the 14 x 32 tile. Every ISA runs the same shapes (the
other paths must agree too). Oracle and tolerances as in test_kernels_matmul.py.
"""

import itertools

import numpy as np
import pytest

# isa (every ISA in turn, forced) and threads (restores the count) are fixtures, used by name
from test_kernels_matmul import DTYPES, assert_close, isa, randn, run, threads  # noqa: F401

from kiln import _cpu

# (M, N, K). N picks the tile: 64 / 128 -> 6 x 64, 48 / 96 -> 8 x 48 (96: 8 x 48 and
# 8 x 32 pad alike -> 8 x 32), 32 / 40 -> 8 x 32 and 8 x 48; 100 -> 6 x 64 with a ragged
# 36-column panel. M leaves every remainder of 6 and 8 somewhere (1, 5, 7, 13, 47, 65,
# 130); K = 256 with N = 64 is exactly 64 KiB of float32 (small), K = 257 just over.
SMALL_SHAPES = [
    (64, 64, 64),
    (65, 64, 17),
    (47, 48, 48),
    (13, 96, 31),
    (7, 32, 32),
    (5, 40, 9),
    (1, 128, 128),
    (130, 128, 128),
    (64, 100, 50),
    (33, 64, 256),
    (33, 64, 257),
    (1000, 64, 24),
]

# Ragged last column panels with a whole vector or more of padding run a narrower tile:
# 8 x 32 -> 8 x 16 (N = 80, 72), 6 x 64 -> 6 x 48 (N = 112 small, 560 mid-sized, B
# packed), 14 x 32 -> 14 x 16 (N = 528; 784 with several k and M blocks); fp64 8 x 24 ->
# 8 x 16 (N = 40) and 8 x 8 (N = 26); AVX2 6 x 16 -> 6 x 8 (N = 20).
RAGGED_SHAPES = [
    (29, 80, 80),
    (64, 72, 40),
    (40, 112, 64),
    (50, 560, 300),
    (100, 528, 300),
    (600, 784, 600),
    (30, 40, 50),
    (30, 26, 20),
]


@pytest.mark.usefixtures("isa")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SMALL_SHAPES + RAGGED_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_small_products_all_transposes_with_epilogue(dtype, shape):
    m, n, k = shape
    rng = np.random.default_rng(m * 7919 + n * 31 + k)
    bias = randn(rng, (n,), dtype)
    for trans_a, trans_b in itertools.product((False, True), (False, True)):
        a = randn(rng, (k, m) if trans_a else (m, k), dtype)
        b = randn(rng, (n, k) if trans_b else (k, n), dtype)
        out = run(a, b, (m, n), dtype, trans_a=trans_a, trans_b=trans_b)
        assert_close(out, a, b, trans_a, trans_b)
        out = run(a, b, (m, n), dtype, trans_a=trans_a, trans_b=trans_b, bias=bias,
                  activation="relu")
        assert_close(out, a, b, trans_a, trans_b, bias, "relu")


@pytest.mark.usefixtures("isa", "threads")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(64, 64, 64), (48, 48, 48), (32, 32, 32), (29, 80, 80)],
                         ids=lambda s: "x".join(map(str, s)))
def test_small_batches_one_and_two_threads_agree_bitwise(dtype, shape):
    # Batches of small products (attention heads) split over the batch between threads;
    # each element is computed the same way by whichever thread, so 1 and 2 threads
    # agree bit for bit. A broadcast operand (batch 1, stride 0) on each side.
    m, n, k = shape
    rng = np.random.default_rng(m + n + k)
    for ba, bb in ((16, 16), (1, 16), (16, 1)):
        a = randn(rng, (ba, m, k), dtype)
        b = randn(rng, (bb, k, n), dtype)
        outs = []
        for nt in (1, 2):
            _cpu.set_num_threads(nt)
            outs.append(run(a, b, (16, m, n), dtype))
        np.testing.assert_array_equal(outs[0], outs[1])
        assert_close(outs[0], a, b)


@pytest.mark.usefixtures("isa")
@pytest.mark.parametrize("act", ["gelu", "gelu_tanh"])
def test_small_tiles_apply_gelu_epilogue(act):
    rng = np.random.default_rng(23)
    for n in (64, 48, 32):
        a, b, bias = randn(rng, (37, 40), np.float32), randn(rng, (40, n), np.float32), \
            randn(rng, (n,), np.float32)
        out = run(a, b, (37, n), np.float32, bias=bias, activation=act)
        assert_close(out, a, b, False, False, bias, act)


# Few output columns (N <= 12) with long enough rows run as dot products along k
# (gemm_dot_avx512.h): every N, K tails of every length mod 16 / 8 (and K < 16), B^T in
# place (trans_b) or packed; trans_a keeps the tile path. (M, N, K)
DOT_SHAPES = [
    (37, 1, 100),
    (50, 1, 13),
    (130, 2, 33),
    (9, 3, 200),
    (64, 4, 64),
    (17, 5, 300),
    (40, 6, 128),
    (3, 7, 500),
    (70, 8, 784),
    (33, 9, 257),
    (128, 10, 784),
    (5, 11, 1000),
    (19, 12, 999),
]


@pytest.mark.usefixtures("isa")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", DOT_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_few_columns_as_dot_products(dtype, shape):
    m, n, k = shape
    rng = np.random.default_rng(m * 31 + n * 7 + k)
    bias = randn(rng, (n,), dtype)
    for trans_a, trans_b in itertools.product((False, True), (False, True)):
        a = randn(rng, (k, m) if trans_a else (m, k), dtype)
        b = randn(rng, (n, k) if trans_b else (k, n), dtype)
        assert_close(run(a, b, (m, n), dtype, trans_a=trans_a, trans_b=trans_b), a, b,
                     trans_a, trans_b)
        for act in ("relu", "gelu", "gelu_tanh"):
            out = run(a, b, (m, n), dtype, trans_a=trans_a, trans_b=trans_b, bias=bias,
                      activation=act)
            assert_close(out, a, b, trans_a, trans_b, bias, act)


@pytest.mark.usefixtures("isa")
@pytest.mark.parametrize("dtype", DTYPES)
def test_dot_products_relu_backward_mask(dtype):
    # matmul_relu_backward: the product is zeroed where x <= 0; a NaN in x keeps it
    rng = np.random.default_rng(41)
    g, w = randn(rng, (45, 300), dtype), randn(rng, (300, 3), dtype)
    x = randn(rng, (45, 3), dtype)
    x[0, 0], x[1, 1] = np.nan, 0.0
    out = np.full((45, 3), np.nan, dtype)
    _cpu.matmul_relu_backward(g, w, out, False, False, x)
    ref = (g.astype(np.float64) @ w.astype(np.float64)) * ~(x <= 0)
    np.testing.assert_allclose(out, ref, rtol=1e-4 if dtype == np.float32 else 1e-12,
                               atol=1e-4 if dtype == np.float32 else 1e-12)
    assert out[1, 1] == 0 and out[0, 0] != 0


@pytest.mark.usefixtures("isa", "threads")
@pytest.mark.parametrize("dtype", DTYPES)
def test_dot_products_batched_and_threaded_bitwise(dtype):
    # Rows are split evenly over the threads and a thread's range can span batch elements,
    # so B^T is packed again whenever its element changes (b with its own batch) or once
    # (b broadcast). 1 and 2 threads agree bit for bit.
    rng = np.random.default_rng(43)
    m, n, k = 500, 4, 600
    for ba, bb in ((3, 3), (1, 3), (3, 1)):
        for trans_b in (False, True):
            a = randn(rng, (ba, m, k), dtype)
            b = randn(rng, (bb, n, k) if trans_b else (bb, k, n), dtype)
            outs = []
            for nt in (1, 2):
                _cpu.set_num_threads(nt)
                outs.append(run(a, b, (3, m, n), dtype, trans_b=trans_b))
            np.testing.assert_array_equal(outs[0], outs[1])
            assert_close(outs[0], a, b, False, trans_b)


@pytest.mark.usefixtures("isa")
def test_dot_products_propagate_nan_to_their_row_only():
    rng = np.random.default_rng(47)
    a, b = randn(rng, (20, 200), np.float32), randn(rng, (200, 2), np.float32)
    a[7, 150] = np.nan
    out = run(a, b, (20, 2), np.float32)
    assert np.isnan(out[7]).all() and not np.isnan(np.delete(out, 7, 0)).any()
