"""Tests of the CPU GEMM kernels kiln._cpu.matmul and matmul_naive.

Oracle: NumPy in float64. Every instruction-set path (AVX-512, AVX2, scalar)
is forced with _cpu.set_isa. float32 results are compared with a tolerance
scaled by sqrt(K) and by |op(a)| @ |op(b)| + |bias| (the magnitude the
rounding errors are proportional to), float64 ones with a tight one.
"""

import itertools
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from kiln import _cpu

ISAS = ["avx512", "avx2", "scalar"]
DTYPES = [np.float32, np.float64]
ACTS = ["none", "relu", "gelu", "gelu_tanh"]
_RANK = {"scalar": 0, "avx2": 1, "avx512": 2}


@pytest.fixture(params=ISAS)
def isa(request):
    name = request.param
    if _RANK[name] > _RANK[_cpu.supported_isa()]:
        pytest.skip(f"CPU does not support {name}")
    before = _cpu.get_isa()
    _cpu.set_isa(name)
    yield name
    _cpu.set_isa(before)


@pytest.fixture
def threads():
    """Restores the thread count a test changes."""
    before = _cpu.get_num_threads()
    yield
    _cpu.set_num_threads(before)


_erf = np.vectorize(math.erf, otypes=[np.float64])


def activate(x, act):
    if act == "none":
        return x
    if act == "relu":
        return np.maximum(x, 0.0)
    if act == "gelu":
        return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))
    if act == "gelu_tanh":
        return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))
    raise AssertionError(act)


def op(x, trans):
    return np.swapaxes(x, -1, -2) if trans else x


def reference(a, b, trans_a=False, trans_b=False, bias=None, act="none"):
    """float64 result and the error scale |op(a)| @ |op(b)| + |bias|."""
    a64, b64 = op(a.astype(np.float64), trans_a), op(b.astype(np.float64), trans_b)
    z = a64 @ b64
    scale = np.abs(a64) @ np.abs(b64)
    if bias is not None:
        z = z + bias.astype(np.float64)
        scale = scale + np.abs(bias.astype(np.float64))
    return activate(z, act), scale


def assert_close(out, a, b, trans_a=False, trans_b=False, bias=None, act="none"):
    ref, scale = reference(a, b, trans_a, trans_b, bias, act)
    # a and b both broadcast (batch 1) into a 3-D out: every batch gets the same product
    ref, scale = np.broadcast_to(ref, out.shape), np.broadcast_to(scale, out.shape)
    k = (a.shape[-2] if trans_a else a.shape[-1]) if a.ndim else 0
    eps = np.finfo(out.dtype).eps
    # Rounding error of a K-term dot product grows like sqrt(K) * eps * scale;
    # the activations are 1.13-Lipschitz and add their own rounding (eps * |ref|).
    tol = 8 * eps * math.sqrt(k + 1) * scale + 4 * eps * np.abs(ref)
    err = np.abs(out.astype(np.float64) - ref)
    assert np.all(err <= tol), (
        f"max error {err.max():.3g}, max tol at worst {tol.flat[np.argmax(err - tol)]:.3g}"
    )


def randn(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


def run(a, b, out_shape, dtype, **kw):
    out = np.full(out_shape, np.nan, dtype)  # NaN: any element not written shows up
    _cpu.matmul(a, b, out, **kw)
    return out


# (M, N, K): every size of {1, 3, 17, 64, 100, 1023} in every position, tile
# edges (17, 100 are not multiples of any MR/NR), K = 1023 spans several kc
# blocks and N = 1023 several nb blocks.
SHAPES = [
    (1, 1, 1),
    (3, 17, 64),
    (17, 3, 100),
    (64, 64, 64),
    (100, 100, 3),
    (1, 1023, 17),
    (1023, 1, 17),
    (17, 64, 1023),
    (100, 1023, 17),
    (1023, 100, 3),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_matches_numpy_all_transposes(isa, dtype, shape):
    m, n, k = shape
    rng = np.random.default_rng(m * 10007 + n * 101 + k)
    for trans_a in (False, True):
        for trans_b in (False, True):
            a = randn(rng, (k, m) if trans_a else (m, k), dtype)
            b = randn(rng, (n, k) if trans_b else (k, n), dtype)
            out = run(a, b, (m, n), dtype, trans_a=trans_a, trans_b=trans_b)
            assert_close(out, a, b, trans_a, trans_b)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ACTS)
def test_bias_and_activation(isa, dtype, act):
    rng = np.random.default_rng(7)
    # K = 1023 > kc: the epilogue must fire once, on the last depth block only.
    for m, n, k, trans_b in [(37, 45, 29, False), (30, 70, 1023, True), (5, 3, 1, False)]:
        a = randn(rng, (m, k), dtype)
        b = randn(rng, (n, k) if trans_b else (k, n), dtype)
        bias = randn(rng, (n,), dtype)
        out = run(a, b, (m, n), dtype, trans_b=trans_b, bias=bias, activation=act)
        assert_close(out, a, b, False, trans_b, bias, act)
        out = run(a, b, (m, n), dtype, trans_b=trans_b, activation=act)
        assert_close(out, a, b, False, trans_b, None, act)


# Narrow outputs (N <= one vector: 16 fp32 / 8 fp64 lanes on AVX-512, 8 / 4
# on AVX2) run a one-vector-wide tile with A read in place; N = 1..17 crosses
# both the narrow/wide switch and the masked edge of each. K = 700 spans
# several kc blocks (accumulate, then the epilogue on the last one only); M =
# 35 leaves ragged row panels of every narrow MR.
NARROW_N = list(range(1, 18))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", NARROW_N)
def test_narrow_outputs_every_edge(isa, dtype, n):
    rng = np.random.default_rng(n)
    for m, k in [(35, 128), (128, 700), (1, 33)]:
        for trans_a in (False, True):
            for trans_b in (False, True):
                a = randn(rng, (k, m) if trans_a else (m, k), dtype)
                b = randn(rng, (n, k) if trans_b else (k, n), dtype)
                bias = randn(rng, (n,), dtype)
                act = ["relu", "gelu", "gelu_tanh", "none"][(m + n) % 4]
                out = run(a, b, (m, n), dtype, trans_a=trans_a, trans_b=trans_b, bias=bias,
                          activation=act)
                assert_close(out, a, b, trans_a, trans_b, bias, act)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ACTS)
def test_linear_head_128x128_to_10(isa, dtype, act, threads):
    """The Linear-layer form x @ W.T + bias with 10 outputs, 1 and 2 threads."""
    rng = np.random.default_rng(10)
    a, w, bias = randn(rng, (128, 128), dtype), randn(rng, (10, 128), dtype), randn(rng, (10,), dtype)
    for nt in (1, 2):
        _cpu.set_num_threads(nt)
        out = run(a, w, (128, 10), dtype, trans_b=True, bias=bias, activation=act)
        assert_close(out, a, w, False, True, bias, act)
        out = run(a, w.T.copy(), (128, 10), dtype, bias=bias, activation=act)
        assert_close(out, a, w.T.copy(), False, False, bias, act)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", [1, 2, 5, 8, 14, 16, 17])
def test_small_m_reads_b_in_place(isa, dtype, m):
    """Few rows (<= one row panel) against a B too large to have been read in
    place before: B is now streamed unpacked, with ragged last column panels."""
    rng = np.random.default_rng(m)
    n, k = 333, 700
    a, b, bias = randn(rng, (m, k), dtype), randn(rng, (k, n), dtype), randn(rng, (n,), dtype)
    out = run(a, b, (m, n), dtype, bias=bias, activation="relu")
    assert_close(out, a, b, False, False, bias, "relu")
    out = run(a, b, (m, n), dtype)
    assert_close(out, a, b)


# Linear-layer shapes (M = a batch of ~128 rows): a row-major B is read in
# place for M <= 512 unless its rows are a 4 KiB multiple (N = 1024 f32,
# 512 f64) or the kc x N slab outgrows L2; a trans_a A is read in place for
# K*itemsize <= 1 KiB unless its rows are a 4 KiB multiple. Each shape sits on
# one side of those limits, with ragged row panels (M % MR != 0), ragged
# column panels, several kc blocks (K = 700) and the fused epilogue.
LINEAR_SHAPES = [  # (M, N, K)
    (128, 256, 128),
    (129, 784, 256),
    (126, 10, 128),
    (250, 200, 700),
    (128, 1024, 100),
    (512, 33, 129),
    (513, 40, 64),
    (1024, 50, 64),
    (300, 1000, 1000),
    # M % MR of 1 or 2 (fp32 MR = 14; AVX2 narrow MR = 12): the last rows run as
    # two panels of <= 8 rows, read in place or packed
    (127, 64, 50),
    (142, 40, 300),
    (16, 100, 64),
    (122, 8, 50),
    (29, 5, 7),
    # short rows (K*itemsize <= 1 KiB) in a tile over 256 rows and at least 16 column
    # panels wide: A packed just in time instead of read in place; ragged panels both ways
    (300, 520, 64),
    (1283, 530, 33),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", LINEAR_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_linear_layer_shapes_in_place_paths(isa, dtype, shape):
    m, n, k = shape
    rng = np.random.default_rng(m + 7 * n + 13 * k)
    bias = randn(rng, (n,), dtype)
    for trans_a in (False, True):
        a = randn(rng, (k, m) if trans_a else (m, k), dtype)
        b = randn(rng, (k, n), dtype)
        out = run(a, b, (m, n), dtype, trans_a=trans_a, bias=bias, activation="relu")
        assert_close(out, a, b, trans_a, False, bias, "relu")


@pytest.mark.parametrize("dtype", DTYPES)
def test_activation_changes_values(dtype):
    # Guards the oracle itself: each activation must differ from "none" here.
    rng = np.random.default_rng(3)
    a, b = randn(rng, (8, 8), dtype), randn(rng, (8, 8), dtype)
    plain = run(a, b, (8, 8), dtype)
    for act in ACTS[1:]:
        assert not np.allclose(run(a, b, (8, 8), dtype, activation=act), plain)


@pytest.mark.parametrize("dtype", DTYPES)
def test_batched_and_broadcast(isa, dtype, threads):
    rng = np.random.default_rng(11)
    m, n, k = 19, 35, 23
    for nt in (1, 2):
        _cpu.set_num_threads(nt)
        # batch 3 runs tile-parallel, batch 64 batch-parallel
        for batch in (3, 64):
            for ba, bb in ((batch, batch), (1, batch), (batch, 1), (1, 1)):
                for trans_a, trans_b in ((False, False), (True, True), (True, False)):
                    a = randn(rng, (ba, k, m) if trans_a else (ba, m, k), dtype)
                    b = randn(rng, (bb, n, k) if trans_b else (bb, k, n), dtype)
                    bias = randn(rng, (n,), dtype)
                    out = run(
                        a,
                        b,
                        (batch, m, n),
                        dtype,
                        trans_a=trans_a,
                        trans_b=trans_b,
                        bias=bias,
                        activation="relu",
                    )
                    assert_close(out, a, b, trans_a, trans_b, bias, "relu")


def test_batched_2d_operands_and_batch_of_one():
    rng = np.random.default_rng(5)
    a, b = randn(rng, (6, 4), np.float32), randn(rng, (4, 5), np.float32)
    out = run(a, b, (1, 6, 5), np.float32)  # B = 1 with a 3-D out
    assert_close(out, a[None], b[None])
    out = run(a[None], b, (6, 5), np.float32)  # a (1, M, K), 2-D out
    assert_close(out, a, b)


def test_64_small_matrices(threads):
    rng = np.random.default_rng(13)
    a = randn(rng, (64, 64, 64), np.float32)
    b = randn(rng, (64, 64, 64), np.float32)
    for nt in (1, 2):
        _cpu.set_num_threads(nt)
        assert_close(run(a, b, (64, 64, 64), np.float32), a, b)


@pytest.mark.parametrize("dtype", DTYPES)
def test_one_and_two_threads_agree_bitwise(isa, dtype, threads):
    # Each output element is computed by the same micro-kernel with the same
    # k order whatever the thread split, so the results must be identical.
    rng = np.random.default_rng(17)
    for m, n, k in [(300, 260, 150), (1023, 30, 64), (30, 1023, 64)]:
        a, b, bias = randn(rng, (m, k), dtype), randn(rng, (n, k), dtype), randn(rng, (n,), dtype)
        outs = []
        for nt in (1, 2):
            _cpu.set_num_threads(nt)
            outs.append(run(a, b, (m, n), dtype, trans_b=True, bias=bias, activation="gelu"))
        np.testing.assert_array_equal(outs[0], outs[1])
        assert_close(outs[0], a, b, False, True, bias, "gelu")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(672, 2688, 450), (601, 2600, 270), (1000, 700, 300)],
                         ids=lambda s: "x".join(map(str, s)))
def test_two_threads_claim_tiles_dynamically(isa, dtype, shape, threads):
    # Large products with rows of A over 1 KiB: 2 threads split C into ~8 tiles (columns
    # split evenly into blocks of at most nb, rows in multiples of MR) and claim them one
    # at a time (run_problem's dynamic split), so which thread computes a tile varies from
    # call to call; the result must not. Several tile rows and columns, ragged last tiles
    # and panels (M = 601, N = 700), several kc blocks (K = 450), every transpose, the
    # bias/relu epilogue; the outputs of 2 and 1 threads must agree bit for bit.
    m, n, k = shape
    rng = np.random.default_rng(m + n + k)
    bias = randn(rng, (n,), dtype)
    for trans_a, trans_b in itertools.product((False, True), (False, True)):
        a = randn(rng, (k, m) if trans_a else (m, k), dtype)
        b = randn(rng, (n, k) if trans_b else (k, n), dtype)
        outs = []
        for nt in (2, 1):
            _cpu.set_num_threads(nt)
            outs.append(run(a, b, (m, n), dtype, trans_a=trans_a, trans_b=trans_b, bias=bias,
                            activation="relu"))
        np.testing.assert_array_equal(outs[0], outs[1])
        assert_close(outs[0], a, b, trans_a, trans_b, bias, "relu")


@pytest.mark.parametrize("dtype", DTYPES)
def test_tiles_claimed_across_a_small_batch(isa, dtype, threads):
    # A batch too small to split by element between 2 threads (3) of products large enough
    # for the dynamic split: the claimed tiles run over (element, tile) pairs, a's batch
    # broadcast (stride 0) against b's.
    rng = np.random.default_rng(5)
    a = randn(rng, (300, 300), dtype)
    b = randn(rng, (3, 300, 310), dtype)
    outs = []
    for nt in (2, 1):
        _cpu.set_num_threads(nt)
        outs.append(run(a, b, (3, 300, 310), dtype))
    np.testing.assert_array_equal(outs[0], outs[1])
    assert_close(outs[0], a, b)


def test_fewer_threads_than_asked_still_covers_every_tile():
    # OMP_THREAD_LIMIT=1 hands matmul a team of 1 although 2 threads are set
    # (as inside another parallel region): every C tile must still be written.
    code = textwrap.dedent(
        """
        import numpy as np
        from kiln import _cpu
        _cpu.set_num_threads(2)
        rng = np.random.default_rng(0)
        err = 0.0
        # the second shape would have the two threads share one packed A block
        for m, k, n in ((300, 200, 500), (672, 450, 2688)):
            a, b = rng.standard_normal((m, k)), rng.standard_normal((k, n))
            out = np.full((m, n), np.nan)
            _cpu.matmul(a, b, out)
            err = max(err, np.abs(out - a @ b).max())
        print(err)
        """
    )
    env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
    res = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    assert float(res.stdout) < 1e-10


def test_large_m_spans_several_row_blocks(isa):
    # M above the packed-A block height (a few thousand rows) exercises the mb loop.
    rng = np.random.default_rng(19)
    a, b = randn(rng, (5000, 20), np.float32), randn(rng, (20, 9), np.float32)
    assert_close(run(a, b, (5000, 9), np.float32), a, b)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(300, 70, 1024), (45, 200, 2048), (1100, 33, 700),
                                   (300, 70, 1100), (45, 200, 700), (130, 33, 2000)],
                         ids=lambda s: "x".join(map(str, s)))
def test_a_packed_just_in_time_with_prefetch(isa, dtype, shape, threads):
    # One column block (N <= nb), long rows of A (K above 1 KiB of row), several kc blocks.
    # With rows a multiple of 4 KiB (K = 1024, 2048) or more than 512 rows per thread
    # (M = 1100 at 1 thread), row-major A is packed just in time: each panel right
    # before its tiles, the next one's source prefetched meanwhile (gemm_driver.h); the
    # last three shapes read it in place instead (a short tile). Many panels, a ragged
    # last one, every transpose, the bias/relu epilogue.
    m, n, k = shape
    rng = np.random.default_rng(m + n + k)
    bias = randn(rng, (n,), dtype)
    for nt, trans_a, trans_b in itertools.product((1, 2), (False, True), (False, True)):
        _cpu.set_num_threads(nt)
        a = randn(rng, (k, m) if trans_a else (m, k), dtype)
        b = randn(rng, (n, k) if trans_b else (k, n), dtype)
        out = run(a, b, (m, n), dtype, trans_a=trans_a, trans_b=trans_b, bias=bias,
                  activation="relu")
        assert_close(out, a, b, trans_a, trans_b, bias, "relu")


@pytest.mark.parametrize("dtype", DTYPES)
def test_zero_sizes(isa, dtype):
    rng = np.random.default_rng(23)
    # M = 0 and N = 0: nothing to write, nothing to crash
    for m, n, k in [(0, 5, 3), (4, 0, 3), (0, 0, 0)]:
        out = np.empty((m, n), dtype)
        _cpu.matmul(np.ones((m, k), dtype), np.ones((k, n), dtype), out)
    out = np.empty((0, 4, 5), dtype)
    _cpu.matmul(np.ones((0, 4, 3), dtype), np.ones((0, 3, 5), dtype), out)
    # K = 0: the product is zero, so out = act(bias) (or act(0) = 0)
    a, b = np.ones((4, 0), dtype), np.ones((0, 5), dtype)
    np.testing.assert_array_equal(run(a, b, (4, 5), dtype), np.zeros((4, 5)))
    bias = randn(rng, (5,), dtype)
    for act in ACTS:
        out = run(a, b, (4, 5), dtype, bias=bias, activation=act)
        want = np.broadcast_to(activate(bias.astype(np.float64), act), (4, 5))
        # GELU of a negative x cancels (1 + erf -> 0): its error scales with |x|, not |gelu(x)|
        tol = 8 * np.finfo(dtype).eps * np.abs(bias.astype(np.float64))
        assert np.all(np.abs(out - want) <= tol), act


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ["gelu", "gelu_tanh"])
def test_gelu_epilogue_over_a_wide_range(isa, dtype, act):
    # a = [[1]], K = 1: out = x exactly, so this checks the epilogue alone
    # (fp32 uses vector erf / exp approximations on the SIMD paths).
    x = np.linspace(-12.0, 12.0, 4801).astype(dtype)[None, :]
    out = run(np.ones((1, 1), dtype), x, x.shape, dtype, activation=act)
    want = activate(x.astype(np.float64), act)
    # near-zero GELU of negative x cancels: the error scales with |x|
    tol = 4 * np.finfo(dtype).eps * np.abs(x.astype(np.float64))
    assert np.all(np.abs(out - want) <= tol)
    special = np.array([[np.nan, np.inf, 1e30]], dtype)
    out = run(np.ones((1, 1), dtype), special, special.shape, dtype, activation=act)
    assert np.isnan(out[0, 0]) and out[0, 1] == np.inf and out[0, 2] == dtype(1e30)


def test_nan_propagates_through_relu(isa):
    a = np.ones((3, 4), np.float32)
    a[1, 2] = np.nan
    out = run(a, np.ones((4, 5), np.float32), (3, 5), np.float32, activation="relu")
    assert np.all(np.isnan(out[1])) and np.all(out[[0, 2]] == 4.0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_matmul_naive(dtype):
    rng = np.random.default_rng(29)
    for m, n, k in [(1, 1, 1), (17, 3, 100), (64, 33, 17), (0, 3, 2), (3, 4, 0)]:
        a, b = randn(rng, (m, k), dtype), randn(rng, (k, n), dtype)
        out = np.full((m, n), np.nan, dtype)
        _cpu.matmul_naive(a, b, out)
        assert_close(out, a, b)


def _bad_calls():
    f4, f8 = np.float32, np.float64
    a, b, out = np.ones((3, 4), f4), np.ones((4, 2), f4), np.zeros((3, 2), f4)
    ro = np.zeros((3, 2), f4)
    ro.flags.writeable = False
    big = np.zeros(100, f4)
    return [
        ("dtype a/b", TypeError, (a, b.astype(f8), out), {}),
        ("dtype out", TypeError, (a, b, out.astype(f8)), {}),
        (
            "dtype int",
            TypeError,
            (a.astype(np.int32), b.astype(np.int32), out.astype(np.int32)),
            {},
        ),
        ("dtype bias", TypeError, (a, b, out), {"bias": np.zeros(2, f8)}),
        ("non-contiguous a", ValueError, (np.ones((4, 3), f4).T, b, out), {}),
        ("non-contiguous out", ValueError, (a, b, np.zeros((2, 3), f4).T), {}),
        ("read-only out", ValueError, (a, b, ro), {}),
        ("1-D a", ValueError, (np.ones(4, f4), b, out), {}),
        ("4-D b", ValueError, (a, np.ones((1, 1, 4, 2), f4), out), {}),
        ("inner", ValueError, (a, np.ones((5, 2), f4), out), {}),
        ("inner trans_b", ValueError, (a, np.ones((2, 5), f4), out), {"trans_b": True}),
        ("batch a", ValueError, (np.ones((2, 3, 4), f4), b, np.zeros((3, 3, 2), f4)), {}),
        ("batch out 2-D", ValueError, (np.ones((2, 3, 4), f4), b, out), {}),
        ("out shape", ValueError, (a, b, np.zeros((3, 3), f4)), {}),
        ("bias shape", ValueError, (a, b, out), {"bias": np.zeros(3, f4)}),
        ("bias 2-D", ValueError, (a, b, out), {"bias": np.zeros((1, 2), f4)}),
        ("activation", ValueError, (a, b, out), {"activation": "swish"}),
        ("out aliases a", ValueError, (big[:12].reshape(3, 4), b, big[6:12].reshape(3, 2)), {}),
    ]


@pytest.mark.parametrize("case", _bad_calls(), ids=lambda c: c[0])
def test_bad_inputs_raise(case):
    _, exc, args, kw = case
    with pytest.raises(exc, match="matmul"):
        _cpu.matmul(*args, **kw)


def test_inner_dimension_message_names_shapes():
    a, b, out = (
        np.ones((3, 4), np.float32),
        np.ones((5, 2), np.float32),
        np.zeros((3, 2), np.float32),
    )
    with pytest.raises(ValueError) as e:
        _cpu.matmul(a, b, out)
    msg = str(e.value)
    assert "matmul" in msg and "(3, 4)" in msg and "(5, 2)" in msg and "K=4" in msg and "K=5" in msg


def test_matmul_naive_bad_inputs():
    a, out = np.ones((3, 4), np.float32), np.zeros((3, 2), np.float32)
    with pytest.raises(ValueError, match="matmul_naive"):
        _cpu.matmul_naive(a, np.ones((5, 2), np.float32), out)
    with pytest.raises(TypeError, match="matmul_naive"):
        _cpu.matmul_naive(a, np.ones((4, 2), np.float64), out)
    with pytest.raises(ValueError, match="matmul_naive"):
        _cpu.matmul_naive(np.ones((1, 3, 4), np.float32), np.ones((4, 2), np.float32), out)
