"""kiln.data: datasets, loader order and seeding, prefetch, splits, collate."""

import gzip
import struct

import numpy as np
import pytest

import kiln
from kiln.data import (
    ArrayDataset,
    ConcatDataset,
    DataLoader,
    Dataset,
    Subset,
    TensorDataset,
    default_collate,
    digits,
    random_split,
    train_val_test_split,
)


def _order(loader):
    return np.concatenate([b[0].numpy() for b in loader]).tolist()


def test_tensor_dataset_rows_and_mismatch():
    ds = TensorDataset(kiln.arange(12.0).reshape(6, 2), kiln.tensor([0, 1, 2, 3, 4, 5]))
    x, y = ds[4]
    assert x.tolist() == [8.0, 9.0] and y.item() == 4
    assert len(ds) == 6
    with pytest.raises(ValueError, match=r"TensorDataset: size mismatch.*\(6, 2\).*\(5,\)"):
        TensorDataset(kiln.zeros(6, 2), kiln.zeros(5))
    with pytest.raises(ValueError, match="at least one"):
        TensorDataset()


def test_loader_sequential_batches_and_drop_last():
    ds = TensorDataset(np.arange(10))
    sizes = [len(b[0]) for b in DataLoader(ds, batch_size=4)]
    assert sizes == [4, 4, 2]
    assert [len(b[0]) for b in DataLoader(ds, batch_size=4, drop_last=True)] == [4, 4]
    assert len(DataLoader(ds, batch_size=4)) == 3 and len(DataLoader(ds, 4, drop_last=True)) == 2
    assert _order(DataLoader(ds, batch_size=3)) == list(range(10))
    b = next(iter(DataLoader(ds, batch_size=3)))
    assert b[0].dtype == kiln.int64  # integer arrays become int64 tensors


def test_loader_shuffle_is_a_permutation_and_seeded():
    ds = TensorDataset(np.arange(50))
    a = DataLoader(ds, batch_size=7, shuffle=True, generator=np.random.default_rng(3))
    e1, e2 = _order(a), _order(a)
    assert sorted(e1) == list(range(50)) and sorted(e2) == list(range(50))
    assert e1 != e2  # a fresh permutation each epoch
    b = DataLoader(ds, batch_size=7, shuffle=True, generator=np.random.default_rng(3))
    assert _order(b) == e1 and _order(b) == e2  # same generator seed, same epochs
    c = DataLoader(ds, batch_size=7, shuffle=True, generator=4)
    assert _order(c) != e1
    # without a generator, kiln.manual_seed decides
    kiln.manual_seed(11)
    g1 = _order(DataLoader(ds, batch_size=5, shuffle=True))
    kiln.manual_seed(11)
    assert _order(DataLoader(ds, batch_size=5, shuffle=True)) == g1


def test_prefetch_thread_gives_the_same_batches():
    ds = ArrayDataset(np.random.default_rng(0).random((37, 1, 6, 6), dtype=np.float32),
                      np.arange(37), transform=kiln.data.transforms.Compose([
                          kiln.data.transforms.RandomCrop(6, padding=2),
                          kiln.data.transforms.GaussianNoise(0.1)]))
    runs = []
    for pf in (0, 1, 3):
        loader = DataLoader(ds, batch_size=5, shuffle=True, generator=9, prefetch_factor=pf)
        runs.append([(x.numpy().copy(), y.numpy().copy()) for x, y in loader])
    for other in runs[1:]:
        assert len(other) == len(runs[0]) == 8
        for (xa, ya), (xb, yb) in zip(runs[0], other):
            np.testing.assert_array_equal(ya, yb)
            np.testing.assert_array_equal(xa, xb)  # augmentation replays exactly too


def test_prefetch_early_break_and_errors():
    ds = TensorDataset(np.arange(100))
    loader = DataLoader(ds, batch_size=2, prefetch_factor=2)
    it = iter(loader)
    assert next(it)[0].tolist() == [0, 1]
    it.close()  # leaving early stops the thread

    class Boom(Dataset):
        def __len__(self):
            return 6

        def __getitem__(self, i):
            if i == 4:
                raise RuntimeError("bad sample 4")
            return np.float32(i)

    with pytest.raises(RuntimeError, match="bad sample 4"):
        list(DataLoader(Boom(), batch_size=2, prefetch_factor=2))


def test_collate_structures_and_custom_collate():
    x, (a, b), d = default_collate([(np.ones(2, np.float32), (1, 2.5), {"k": 3}),
                                    (np.zeros(2, np.float32), (4, 0.5), {"k": 5})])
    assert x.shape == (2, 2) and x.dtype == kiln.float32
    assert a.tolist() == [1, 4] and a.dtype == kiln.int64 and b.dtype == kiln.float32
    assert d["k"].tolist() == [3, 5]
    ds = TensorDataset(np.arange(6))
    out = list(DataLoader(ds, batch_size=4, collate_fn=lambda s: [int(v[0]) for v in s]))
    assert out == [[0, 1, 2, 3], [4, 5]]
    with pytest.raises(TypeError, match="cannot collate"):
        default_collate([object(), object()])


def test_loader_bad_arguments():
    ds = TensorDataset(np.arange(4))
    with pytest.raises(ValueError, match="batch_size should be a positive integer"):
        DataLoader(ds, batch_size=0)
    with pytest.raises(ValueError, match="num_workers"):
        DataLoader(ds, num_workers=2)
    with pytest.raises(ValueError, match="mutually exclusive"):
        DataLoader(ds, sampler=[0, 1], shuffle=True)
    with pytest.raises(TypeError, match="generator"):
        DataLoader(ds, generator="seed")


def test_sampler_and_batch_sampler():
    ds = TensorDataset(np.arange(10) * 10)
    assert _order(DataLoader(ds, batch_size=2, sampler=[9, 0, 3])) == [90, 0, 30]
    assert [b[0].tolist() for b in DataLoader(ds, batch_sampler=[[1, 2], [5]])] == \
        [[10, 20], [50]]


def test_random_split_sizes_and_disjoint():
    ds = TensorDataset(np.arange(10))
    parts = random_split(ds, [0.5, 0.3, 0.2], generator=0)
    assert [len(p) for p in parts] == [5, 3, 2]
    allidx = np.concatenate([p.indices for p in parts])
    assert sorted(allidx.tolist()) == list(range(10))
    # PyTorch's remainder rule: floor each, then one each round-robin from the first
    assert [len(p) for p in random_split(TensorDataset(np.arange(11)), [1 / 3] * 3)] == [4, 4, 3]
    assert [len(p) for p in random_split(ds, [7, 3])] == [7, 3]
    with pytest.raises(ValueError, match="does not equal the length"):
        random_split(ds, [4, 4])
    same = random_split(ds, [0.5, 0.5], generator=0)
    assert same[0].indices.tolist() == random_split(ds, [0.5, 0.5], generator=0)[0].indices.tolist()


def test_train_val_test_split_default_and_stratified():
    labels = np.repeat([0, 1, 2], [50, 30, 20])
    ds = ArrayDataset(np.zeros((100, 3)), labels)
    tr, va, te = train_val_test_split(ds, generator=1)
    assert (len(tr), len(va), len(te)) == (70, 15, 15)
    tr, va, te = train_val_test_split(ds, stratify=True, generator=1)
    assert (len(tr), len(va), len(te)) == (70, 15, 15)
    counts = [np.bincount(labels[s.indices], minlength=3).tolist() for s in (tr, va, te)]
    assert counts == [[35, 21, 14], [8, 4, 3], [7, 5, 3]]  # 70/15/15 of each class
    allidx = np.concatenate([s.indices for s in (tr, va, te)])
    assert sorted(allidx.tolist()) == list(range(100))
    # sizes match the unstratified split on an awkward size too
    d = digits()
    sizes = [len(s) for s in train_val_test_split(d, stratify=True, generator=0)]
    assert sizes == [len(s) for s in train_val_test_split(d, generator=0)] == [1258, 270, 269]
    with pytest.raises(ValueError, match="three non-negative fractions"):
        train_val_test_split(ds, (0.5, 0.5))


def test_subset_and_concat():
    ds = TensorDataset(np.arange(5))
    sub = Subset(ds, [4, 2])
    assert len(sub) == 2 and int(sub[0][0]) == 4
    assert _order(DataLoader(sub, batch_size=2)) == [4, 2]
    cat = ds + TensorDataset(np.arange(5, 8))
    assert isinstance(cat, ConcatDataset) and len(cat) == 8 and int(cat[6][0]) == 6
    assert _order(DataLoader(cat, batch_size=3)) == list(range(8))
    with pytest.raises(IndexError):
        Subset(ds, [5])


def test_digits_bundled():
    d = digits()
    assert d.data.shape == (1797, 1, 8, 8) and d.data.dtype == np.float32
    assert d.data.min() == 0.0 and d.data.max() == 1.0
    assert np.bincount(d.targets).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    # first sample of the UCI test set (a zero): row 2 of the 8x8 image, counts / 16
    assert (d.data[0, 0, 1] * 16).astype(int).tolist() == [0, 0, 13, 15, 10, 15, 5, 0]
    assert digits(flatten=True).data.shape == (1797, 64)


def _write_idx(path, arr, gz):
    code = {np.uint8: 0x08}[arr.dtype.type]
    head = struct.pack(">HBB", 0, code, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    data = head + arr.tobytes()
    if gz:
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


@pytest.mark.parametrize("gz", [True, False])
def test_idx_loaders_on_synthetic_files(tmp_path, gz):
    rng = np.random.default_rng(0)
    sfx = ".gz" if gz else ""
    for prefix, n in (("train", 12), ("t10k", 5)):
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte{sfx}",
                   rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), gz)
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte{sfx}",
                   rng.integers(0, 10, n, dtype=np.uint8), gz)
    tr = kiln.data.fashion_mnist("train", root=tmp_path)
    te = kiln.data.mnist(tmp_path, split="test")
    assert tr.data.shape == (12, 1, 28, 28) and te.data.shape == (5, 1, 28, 28)
    raw = kiln.data.read_idx(tmp_path / f"train-images-idx3-ubyte{sfx}")
    np.testing.assert_array_equal(tr.data[:, 0], raw / np.float32(255))
    assert tr.targets.dtype == np.int64 and tr.classes[0] == "T-shirt/top"


def test_idx_missing_names_the_debian_package(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        kiln.data.fashion_mnist(root=tmp_path)
    bad = tmp_path / "train-images-idx3-ubyte"
    bad.write_bytes(b"\x01\x02\x03\x04\x05")
    with pytest.raises(ValueError, match="not an IDX file"):
        kiln.data.read_idx(bad)


def test_text_corpus(tmp_path):
    (tmp_path / "a.txt").write_text("abcabcabc" * 10)
    (tmp_path / "b.txt").write_text("xyz" * 10)
    train, val = kiln.data.text(tmp_path, block_size=4, val_fraction=0.2)
    assert train.itos == ["\n", "a", "b", "c", "x", "y", "z"]
    x, y = train[1]
    assert train.decode(x) == "bcab" and train.decode(y) == "cabc"
    xb, yb = next(iter(DataLoader(train, batch_size=3)))
    assert xb.shape == (3, 4) and xb.dtype == kiln.int64
    np.testing.assert_array_equal(xb.numpy()[1], x)
    assert train.decode(train.encode("cab")) == "cab"
    with pytest.raises(FileNotFoundError):
        kiln.data.text(tmp_path / "none.txt")


def test_mnist1d_generator():
    pytest.importorskip("mnist1d")
    state = np.random.get_state()
    tr, te = kiln.data.mnist1d(num_samples=200, seed=3)
    assert tr.data.shape == (160, 1, 40) and te.data.shape == (40, 1, 40)
    assert tr.data.dtype == np.float32 and set(np.unique(tr.targets)) <= set(range(10))
    tr2, _ = kiln.data.mnist1d(num_samples=200, seed=3)
    np.testing.assert_array_equal(tr.data, tr2.data)
    assert np.random.get_state()[1].tolist() == state[1].tolist()  # NumPy's global RNG restored
