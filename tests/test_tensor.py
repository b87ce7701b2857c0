"""Tensor basics: creation defaults like PyTorch's, dtypes, zero-copy NumPy and DLPack,
indexing and assignment, in-place ops, printing, zero-size tensors, the allocator."""

from pathlib import Path

import numpy as np
import pytest
import torch

import kiln


@pytest.mark.parametrize("make_k,make_t", [
    (lambda: kiln.tensor([1.0, 2.0]), lambda: torch.tensor([1.0, 2.0])),
    (lambda: kiln.tensor([1, 2]), lambda: torch.tensor([1, 2])),
    (lambda: kiln.tensor([True]), lambda: torch.tensor([True])),
    (lambda: kiln.tensor(np.ones(2)), lambda: torch.tensor(np.ones(2))),
    (lambda: kiln.zeros(2, 3), lambda: torch.zeros(2, 3)),
    (lambda: kiln.ones((2, 3), dtype=kiln.float64), lambda: torch.ones((2, 3), dtype=torch.float64)),
    (lambda: kiln.full((2,), 7), lambda: torch.full((2,), 7)),
    (lambda: kiln.full((2,), 1.5), lambda: torch.full((2,), 1.5)),
    (lambda: kiln.arange(5), lambda: torch.arange(5)),
    (lambda: kiln.arange(0, 1, 0.25), lambda: torch.arange(0, 1, 0.25)),
    (lambda: kiln.linspace(0, 1, 5), lambda: torch.linspace(0, 1, 5)),
    (lambda: kiln.eye(3, 2), lambda: torch.eye(3, 2)),
    (lambda: kiln.zeros_like(kiln.ones(2, dtype=kiln.int64)), lambda: torch.zeros_like(torch.ones(2, dtype=torch.int64))),
])
def test_creation_matches_torch(make_k, make_t):
    k, t = make_k(), make_t()
    assert k.dtype.name == str(t.dtype).replace("torch.", "")
    np.testing.assert_array_equal(k.numpy(), t.numpy())


def test_random_creation_shapes_dtypes_and_seed():
    kiln.manual_seed(3)
    a = kiln.randn(100, 10)
    kiln.manual_seed(3)
    b = kiln.randn(100, 10)
    assert a.dtype == kiln.float32 and a.shape == (100, 10)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert abs(a.numpy().mean()) < 0.1 and abs(a.numpy().std() - 1) < 0.1
    r = kiln.rand(1000)
    assert 0 <= r.numpy().min() and r.numpy().max() < 1
    i = kiln.randint(2, 5, (1000,))
    assert i.dtype == kiln.int64 and set(np.unique(i.numpy())) == {2, 3, 4}
    assert kiln.randn_like(a).shape == a.shape
    assert kiln.empty(3, 0).shape == (3, 0)


def test_from_numpy_is_zero_copy_both_ways():
    arr = np.arange(6, dtype=np.float32).reshape(2, 3)
    t = kiln.from_numpy(arr)
    arr[0, 0] = 42
    assert t[0, 0].item() == 42
    assert np.shares_memory(t.numpy(), arr)
    with pytest.raises(TypeError, match="from_numpy"):
        kiln.from_numpy(np.zeros(3, dtype=np.complex64))


def test_dlpack_both_ways_zero_copy():
    tt = torch.arange(6, dtype=torch.float32)
    k = kiln.from_dlpack(tt)
    tt[1] = 10
    assert k[1].item() == 10
    back = torch.from_dlpack(k)
    k.data[2] = 20
    assert back[2].item() == 20
    assert kiln.from_dlpack(np.ones(3)).dtype == kiln.float64


def test_repr_like_torch():
    assert repr(kiln.tensor([1.0, 2.5])) == repr(torch.tensor([1.0, 2.5]))
    assert repr(kiln.tensor([[1.0, 2.0], [3.0, 40.0]])) == repr(torch.tensor([[1.0, 2.0], [3.0, 40.0]]))
    assert repr(kiln.tensor([1, 20])) == repr(torch.tensor([1, 20]))
    assert repr(kiln.tensor([1.0], requires_grad=True)) == "tensor([1.], requires_grad=True)"
    assert "grad_fn=<MulBackward>" in repr(kiln.tensor([1.0], requires_grad=True) * 2)
    assert "dtype=kiln.float64" in repr(kiln.tensor([1.0], dtype=kiln.float64))


def test_setitem_and_inplace_ops():
    x = kiln.zeros(3, 4)
    x[1] = 5.0
    x[:, 0] = kiln.tensor([1.0, 2.0, 3.0])
    x[x > 4] = -1.0
    expect = np.zeros((3, 4), np.float32)
    expect[1] = -1
    expect[:, 0] = [1, 2, 3]
    np.testing.assert_array_equal(x.numpy(), expect)
    v = x._version
    x += 1
    x.mul_(2).add_(kiln.ones(4), alpha=3)
    assert x._version == v + 3
    np.testing.assert_array_equal(x.numpy(), (expect + 1) * 2 + 3)
    x.zero_()
    assert not x.numpy().any()


def test_setitem_records_gradient():
    w = kiln.randn(3, requires_grad=True)
    y = w * 1.0
    y[1] = w[0] * 10
    y.sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), [11.0, 0.0, 1.0])


def test_inplace_on_leaf_requiring_grad_raises():
    w = kiln.randn(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf"):
        w.add_(1)
    with kiln.no_grad():
        w.add_(1)  # allowed, like an optimizer step


def test_conversions_and_metadata():
    x = kiln.arange(6).reshape(2, 3)
    assert x.dtype == kiln.int64 and x.float().dtype == kiln.float32
    assert x.to(kiln.float64).dtype == kiln.float64 and x.double().dtype == kiln.float64
    assert x.size() == (2, 3) and x.size(-1) == 3 and x.dim() == 2 and x.numel() == 6
    assert x.T.shape == (3, 2) and not x.T.is_contiguous() and x.T.contiguous().is_contiguous()
    assert x.stride() == (3, 1)
    assert kiln.tensor(3.5).item() == 3.5 and int(kiln.tensor([7])) == 7
    assert x.tolist() == [[0, 1, 2], [3, 4, 5]]
    with pytest.raises(RuntimeError, match="numpy"):
        kiln.ones(2, requires_grad=True).numpy()
    with pytest.raises(RuntimeError, match="only Tensors of floating point"):
        x.requires_grad_()


def test_zero_size_reductions_match_torch():
    k, t = kiln.zeros(0, 3), torch.zeros(0, 3)
    assert k.sum().item() == t.sum().item() == 0
    np.testing.assert_array_equal(k.sum(0).numpy(), t.sum(0).numpy())
    assert np.isnan(k.mean().item()) and np.isnan(t.mean().item())
    assert k.prod().item() == 1.0
    with pytest.raises(RuntimeError, match="non-empty"):
        k.max()
    with pytest.raises(IndexError, match="size 0"):
        k.max(0)


def test_split_chunk_stack_cat():
    x = kiln.arange(10).reshape(5, 2)
    assert [p.shape[0] for p in x.split(2)] == [2, 2, 1]
    assert [p.shape[0] for p in x.chunk(2)] == [3, 2]
    assert kiln.cat(list(x.split(2))).tolist() == x.tolist()
    assert kiln.stack([x, x], 1).shape == (5, 2, 2)


def test_caching_allocator_reuses_buffers():
    kiln.empty_cache()
    before = kiln.memory_stats()
    a = kiln.randn(512, 512)
    for _ in range(20):
        b = (a * 2 + 1).relu()
        del b
    after = kiln.memory_stats()
    assert after["hits"] - before["hits"] >= 30
    assert after["misses"] - before["misses"] <= 6


def _vm_flags_of(address: int) -> list[str] | None:
    """The VmFlags of the mapping holding `address` in /proc/self/smaps (None: not found)."""
    inside = False
    for line in open("/proc/self/smaps"):
        head = line.split(" ", 1)[0]
        if "-" in head and ":" not in head:
            lo, hi = (int(x, 16) for x in head.split("-"))
            inside = lo <= address < hi
        elif inside and line.startswith("VmFlags:"):
            return line.split()[1:]
    return None


@pytest.mark.skipif(not Path("/sys/kernel/mm/transparent_hugepage/enabled").exists()
                    or not Path("/proc/self/smaps").exists(),
                    reason="no transparent huge pages on this system")
def test_large_arrays_are_advised_for_huge_pages():
    # kiln's NumPy memory handler replaces NumPy's allocator, which advises arrays of 4 MiB
    # and more for transparent huge pages; kiln's must do the same from 2 MiB (large GEMM
    # operands otherwise stream through 4 KiB pages). "hg" is the kernel's flag for
    # madvise(MADV_HUGEPAGE); small arrays keep ordinary pages.
    big = np.empty((1024, 1024), np.float32)  # 4 MiB, through kiln's handler
    flags = _vm_flags_of(big.ctypes.data)
    assert flags is not None and "hg" in flags, flags
    x = kiln.randn(1500, 600)
    w = kiln.randn(700, 600)
    ref = x.numpy().astype(np.float64) @ w.numpy().astype(np.float64).T
    # 1500 rows: the GEMM's packed A block is over 2 MiB, so its workspace is huge-page backed
    np.testing.assert_allclose(kiln.nn.functional.linear(x, w).numpy(), ref, rtol=1e-4,
                               atol=1e-3)


def test_numpy_interop_operators():
    x = kiln.tensor([1.0, 2.0])
    y = np.array([1.0, 1.0], dtype=np.float32) + x
    assert isinstance(y, kiln.Tensor) and y.tolist() == [2.0, 3.0]
    assert np.asarray(x).tolist() == [1.0, 2.0]


def test_python_scalars_keep_float32():
    x = kiln.tensor([1.0, 2.0])
    assert (x * 2.5).dtype == kiln.float32
    assert (kiln.tensor([1, 2]) / 2).dtype == kiln.float32
    assert (kiln.tensor([1, 2]) * 2).dtype == kiln.int64
    assert (x + kiln.tensor([1.0], dtype=kiln.float64)).dtype == kiln.float64
