"""kiln.distributed collectives on 2 and 3 MPI ranks (3 oversubscribed on CI's 2 cores)
against NumPy, the cross-rank shape check, and aborting the job when a rank raises.

Each world size runs one worker job (tests/mpi_workers/collectives_worker.py) that calls
every collective and saves what it got; the tests here recompute the answers in NumPy
from the same deterministic per-rank inputs."""

import sys
import time

import numpy as np
import pytest
from mpi_helpers import WORKERS, mpirun

import kiln.distributed as dist

sys.path.insert(0, str(WORKERS))
from mpi_common import rank_input  # noqa: E402

FLOATS = ("float32", "float64")
TOL = {"float32": 1e-6, "float64": 1e-13}


@pytest.fixture(scope="module", params=[2, 3], ids=["2ranks", "3ranks"])
def world(request, tmp_path_factory):
    W = request.param
    out = tmp_path_factory.mktemp(f"coll{W}")
    mpirun(W, "collectives_worker.py", out)
    return W, [dict(np.load(out / f"coll_r{r}.npz")) for r in range(W)]


def inputs(name, W, shape, dtype):
    return np.stack([rank_input(name, r, shape, dtype) for r in range(W)])


def close(got, want, dtype="float64"):
    np.testing.assert_allclose(got, want, rtol=TOL[dtype] * 10, atol=TOL[dtype])


def test_ranks(world):
    W, res = world
    assert [int(d["rank"]) for d in res] == list(range(W))
    assert all(int(d["world"]) == W for d in res)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("op", ["sum", "avg", "max", "min", "product"])
def test_all_reduce(world, op, dtype):
    W, res = world
    key = f"all_reduce_{op}_{dtype}"
    x = inputs(key, W, (4, 5), dtype).astype(np.float64)
    if op == "product":
        x = (1.0 + 0.1 * x.astype(dtype)).astype(np.float64)
    want = {"sum": x.sum(0), "avg": x.mean(0), "max": x.max(0), "min": x.min(0),
            "product": x.prod(0)}[op]
    for d in res:
        assert d[key].dtype == np.dtype(dtype)
        close(d[key], want, dtype)


def test_all_reduce_int64_exact(world):
    W, res = world
    want = inputs("all_reduce_sum_int64", W, (7,), np.int64).sum(0)
    for d in res:
        np.testing.assert_array_equal(d["all_reduce_sum_int64"], want)


def test_all_reduce_async_work(world):
    W, res = world
    want = inputs("all_reduce_async", W, (3, 3), np.float64).mean(0)
    for d in res:
        close(d["all_reduce_async"], want)
        assert bool(d["async_completed"])


def test_all_reduce_non_contiguous_writes_through(world):
    W, res = world
    want = inputs("all_reduce_noncontig", W, (6, 4), np.float64).sum(0)
    for d in res:
        close(d["all_reduce_noncontig"], want)


@pytest.mark.parametrize("dtype", FLOATS)
def test_broadcast_from_last_rank(world, dtype):
    W, res = world
    key = f"broadcast_{dtype}"
    want = rank_input(key, W - 1, (5,), dtype)
    for d in res:
        np.testing.assert_array_equal(d[key], want)


def test_all_gather(world):
    W, res = world
    want = inputs("all_gather", W, (2, 3), np.float64)
    want32 = inputs("all_gather_into_tensor", W, (3, 2), np.float32).reshape(W * 3, 2)
    for d in res:
        np.testing.assert_array_equal(d["all_gather"], want)
        np.testing.assert_array_equal(d["all_gather_into_tensor"], want32)


def test_reduce_scatter(world):
    W, res = world
    for r, d in enumerate(res):
        want = inputs(f"reduce_scatter_{r}", W, (2, 3), np.float64).sum(0)
        close(d["reduce_scatter"], want)
        for op, fn in (("sum", np.sum), ("max", np.max), ("avg", np.mean)):
            x = inputs(f"reduce_scatter_tensor_{op}", W, (W * 4,), np.float64)
            close(d[f"reduce_scatter_tensor_{op}"], fn(x, axis=0)[4 * r:4 * r + 4])


def test_object_collectives(world):
    W, results = world
    for d in results:
        assert d["all_gather_object"].tolist() == [f"{i}:r{i}" for i in range(W)]
        assert d["broadcast_object_list"].tolist() == [f"from {W - 1}", str((W - 1) * 10)]


def test_mismatched_shapes_raise_on_every_rank(world):
    W, res = world
    for r, d in enumerate(res):
        errors = list(d["errors"])
        assert len(errors) == 3
        for name, e in zip(["all_reduce", "broadcast", "all_gather_into_tensor"], errors):
            assert e.startswith(f"{name}: RuntimeError: {name}: tensors differ across ranks"), e
            assert f"this is rank {r}" in e
        assert "rank 1: (3,) float32" in errors[0] and "rank 1: (3,) float64" in errors[1]
        # the communicator is still usable afterwards
        np.testing.assert_array_equal(d["after_errors"], [W, W])


def test_uncaught_exception_aborts_the_job():
    t0 = time.monotonic()
    res = mpirun(2, "abort_worker.py", check=False, timeout=60)
    elapsed = time.monotonic() - t0
    assert res.returncode != 0
    assert elapsed < 30, f"the job took {elapsed:.1f} s to come down"
    assert "rank 1 of 2 raised; aborting the job" in res.stderr
    assert "ValueError: boom on purpose in rank 1" in res.stderr
    assert "must not happen" not in res.stdout


def test_collective_without_init_raises():
    if dist.is_initialized():
        pytest.skip("a process group is initialised in this process")
    with pytest.raises(RuntimeError, match="all_reduce: the default process group has not"):
        import kiln
        dist.all_reduce(kiln.ones(2))
    with pytest.raises(ValueError, match="backend 'nccl' is not supported"):
        dist.init_process_group("nccl")
