"""Datasets and splits: ``Dataset``, ``TensorDataset``, ``ArrayDataset``, ``Subset``,
``ConcatDataset``, ``random_split`` and ``train_val_test_split``.

A dataset maps an index to a sample. Besides PyTorch's ``__getitem__`` protocol, the
in-memory datasets here implement ``_fetch_batch(indices)``: one NumPy fancy-index per
batch instead of a Python call per sample, which the ``DataLoader`` uses when it collates
with its default collate function (the result is the same as collating the samples).

Splits draw their permutation from a NumPy ``Generator`` (``generator=``) or, when none is
given, from kiln's global generator, so ``kiln.manual_seed`` makes them reproducible.
Fractional lengths follow PyTorch's rule: ``floor(frac * n)`` each, then the remainder is
handed out one at a time, round-robin from the first split.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

import numpy as np

from kiln.tensor import Tensor

__all__ = ["Dataset", "TensorDataset", "ArrayDataset", "Subset", "ConcatDataset",
           "random_split", "train_val_test_split"]


def _as_generator(generator) -> np.random.Generator:
    """A NumPy Generator from ``None`` (kiln's global one), an int seed, or a Generator."""
    if generator is None:
        from kiln.creation import default_generator

        return default_generator()
    if isinstance(generator, np.random.Generator):
        return generator
    if isinstance(generator, (int, np.integer)) and not isinstance(generator, bool):
        return np.random.default_rng(int(generator))
    raise TypeError(f"expected generator to be a numpy.random.Generator, an int seed or None, "
                    f"got {type(generator).__name__}")


def _to_numpy(x) -> np.ndarray:
    if isinstance(x, Tensor):
        return x.numpy()
    return np.asarray(x)


class Dataset:
    """An indexable collection of samples: subclass and define ``__getitem__`` / ``__len__``.

    >>> from kiln.data import Dataset
    >>> class Squares(Dataset):
    ...     def __len__(self): return 4
    ...     def __getitem__(self, i): return i * i
    >>> [Squares()[i] for i in range(4)]
    [0, 1, 4, 9]
    """

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__")

    def __add__(self, other: Dataset) -> ConcatDataset:
        return ConcatDataset([self, other])


def _index_items(items, indices):
    """Fancy-index each array/tensor of ``items`` with ``indices``; tensors stay tensors."""
    out = []
    for t in items:
        if isinstance(t, Tensor):
            from kiln.creation import from_numpy

            out.append(from_numpy(np.ascontiguousarray(t.numpy()[indices])))
        else:
            out.append(t[indices])
    return tuple(out)


class TensorDataset(Dataset):
    """Samples are the ``i``-th rows of tensors (or arrays) that share their first dimension.

    >>> import kiln
    >>> from kiln.data import TensorDataset
    >>> ds = TensorDataset(kiln.arange(6.0).reshape(3, 2), kiln.tensor([0, 1, 0]))
    >>> len(ds), ds[1][0].tolist(), ds[1][1].item()
    (3, [2.0, 3.0], 1)
    """

    def __init__(self, *tensors) -> None:
        if not tensors:
            raise ValueError("TensorDataset: expected at least one tensor")
        sizes = [int(t.shape[0]) if len(t.shape) else None for t in tensors]
        if None in sizes or len(set(sizes)) != 1:
            shapes = [tuple(t.shape) for t in tensors]
            raise ValueError(f"TensorDataset: size mismatch between tensors, shapes {shapes} "
                             "(all need the same first dimension)")
        self.tensors = tuple(tensors)

    def __len__(self) -> int:
        return int(self.tensors[0].shape[0])

    def __getitem__(self, index):
        return tuple(t[index] for t in self.tensors)

    def _fetch_batch(self, indices: np.ndarray):
        return _index_items(self.tensors, indices)


class ArrayDataset(Dataset):
    """In-memory ``(data, targets)`` with optional ``transform`` / ``target_transform``
    (like torchvision's datasets): ``ds[i]`` is ``(transform(data[i]), targets[i])``.

    ``data`` and ``targets`` are NumPy arrays (kept as given; the loader turns them into
    kiln tensors). Transforms from :mod:`kiln.data.transforms` take one sample or a
    batch, so the loader applies them to a whole batch at once.

    >>> import numpy as np
    >>> from kiln.data import ArrayDataset
    >>> ds = ArrayDataset(np.zeros((5, 1, 2, 2), np.float32), np.arange(5), classes=list("abcde"))
    >>> x, y = ds[3]
    >>> x.shape, int(y), ds.classes[y]
    ((1, 2, 2), 3, 'd')
    """

    def __init__(self, data, targets, transform=None, target_transform=None,
                 classes: Sequence[str] | None = None) -> None:
        self.data = _to_numpy(data)
        self.targets = _to_numpy(targets)
        if self.data.shape[:1] != self.targets.shape[:1]:
            raise ValueError(f"ArrayDataset: data has {self.data.shape[0]} samples but targets "
                             f"{self.targets.shape[0]} (shapes {self.data.shape}, "
                             f"{self.targets.shape})")
        self.transform = transform
        self.target_transform = target_transform
        self.classes = list(classes) if classes is not None else None

    def __len__(self) -> int:
        return int(self.data.shape[0])

    def __getitem__(self, index):
        x, y = self.data[index], self.targets[index]
        if self.transform is not None:
            x = self.transform(x)
        if self.target_transform is not None:
            y = self.target_transform(y)
        return x, y

    def _fetch_batch(self, indices: np.ndarray):
        x, y = self.data[indices], self.targets[indices]
        if self.transform is not None:
            t = self.transform
            x = t.batch(x) if hasattr(t, "batch") else np.stack([t(s) for s in x])
        if self.target_transform is not None:
            y = np.stack([np.asarray(self.target_transform(v)) for v in y])
        return x, y

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(samples={len(self)}, data={self.data.shape} "
                f"{self.data.dtype}, targets={self.targets.shape} {self.targets.dtype})")


class Subset(Dataset):
    """The samples of ``dataset`` at ``indices``, in that order."""

    def __init__(self, dataset, indices) -> None:
        self.dataset = dataset
        self.indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        n = len(dataset)
        if self.indices.size and (self.indices.min() < -n or self.indices.max() >= n):
            raise IndexError(f"Subset: index out of range for a dataset of {n} samples")

    def __len__(self) -> int:
        return int(self.indices.size)

    def __getitem__(self, index):
        if isinstance(index, (list, np.ndarray)):
            return self.dataset[self.indices[np.asarray(index)]]
        return self.dataset[int(self.indices[index])]

    @property
    def _fetch_batch(self):
        inner = getattr(self.dataset, "_fetch_batch", None)
        if inner is None:
            raise AttributeError("_fetch_batch")
        return lambda idx: inner(self.indices[np.asarray(idx)])


class ConcatDataset(Dataset):
    """The datasets one after another."""

    def __init__(self, datasets) -> None:
        self.datasets = list(datasets)
        if not self.datasets:
            raise ValueError("ConcatDataset: expected at least one dataset")
        self.cumulative_sizes = list(np.cumsum([len(d) for d in self.datasets]).tolist())

    def __len__(self) -> int:
        return self.cumulative_sizes[-1]

    def __getitem__(self, index: int):
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"ConcatDataset: index out of range for {len(self)} samples")
        d = bisect.bisect_right(self.cumulative_sizes, index)
        start = self.cumulative_sizes[d - 1] if d else 0
        return self.datasets[d][index - start]


def _split_lengths(n: int, lengths: Sequence[float], op: str) -> list[int]:
    lengths = list(lengths)
    if not lengths:
        raise ValueError(f"{op}: expected at least one length")
    if math.isclose(sum(lengths), 1.0) and sum(lengths) <= 1.0 + 1e-9 and any(
            isinstance(f, float) for f in lengths):
        if any(f < 0 or f > 1 for f in lengths):
            raise ValueError(f"{op}: fractions must be in [0, 1], got {lengths}")
        counts = [int(math.floor(n * f)) for f in lengths]
        for i in range(n - sum(counts)):  # PyTorch's round-robin remainder
            counts[i % len(counts)] += 1
        return counts
    if any(int(v) != v or v < 0 for v in lengths):
        raise ValueError(f"{op}: lengths must be non-negative ints or fractions summing to 1, "
                         f"got {lengths}")
    if sum(lengths) != n:
        raise ValueError(f"{op}: sum of input lengths ({sum(lengths)}) does not equal the "
                         f"length of the input dataset ({n})")
    return [int(v) for v in lengths]


def random_split(dataset, lengths: Sequence[float], generator=None) -> list[Subset]:
    """Split ``dataset`` into non-overlapping random subsets of the given lengths (ints that
    sum to ``len(dataset)``, or fractions that sum to 1), as ``torch.utils.data.random_split``.

    >>> from kiln.data import TensorDataset, random_split
    >>> import numpy as np
    >>> parts = random_split(TensorDataset(np.arange(10)), [0.5, 0.3, 0.2], generator=0)
    >>> [len(p) for p in parts]
    [5, 3, 2]
    """
    counts = _split_lengths(len(dataset), lengths, "random_split")
    perm = _as_generator(generator).permutation(len(dataset))
    out, start = [], 0
    for c in counts:
        out.append(Subset(dataset, perm[start:start + c]))
        start += c
    return out


def _labels_of(dataset) -> np.ndarray:
    for attr in ("targets", "labels"):
        if hasattr(dataset, attr):
            return _to_numpy(getattr(dataset, attr)).reshape(len(dataset), -1)[:, 0]
    if isinstance(dataset, TensorDataset):
        return _to_numpy(dataset.tensors[-1]).reshape(len(dataset), -1)[:, 0]
    if isinstance(dataset, Subset):
        return _labels_of(dataset.dataset)[dataset.indices]
    return np.asarray([_to_numpy(dataset[i][-1]).reshape(-1)[0] for i in range(len(dataset))])


def _stratified_counts(sizes: np.ndarray, fractions, totals) -> list[list[int]]:
    """Per-class counts for each split: the split totals of an unstratified split, shared
    among classes by largest remainder of ``size * fraction`` (ties to the smaller class
    index), never taking more of a class than it has left."""
    left = sizes.astype(np.int64).copy()
    counts = np.zeros((sizes.size, len(fractions)), np.int64)
    for s, (f, total) in enumerate(zip(fractions, totals)):
        if s == len(fractions) - 1:
            counts[:, s] = left
            break
        want = sizes * f
        take = np.minimum(np.floor(want).astype(np.int64), left)
        short = int(total - take.sum())
        order = np.argsort(-(want - take), kind="stable")
        for c in order:
            if short <= 0:
                break
            if take[c] < left[c]:
                take[c] += 1
                short -= 1
        counts[:, s] = take
        left -= take
    return counts.tolist()


def train_val_test_split(dataset, fractions: Sequence[float] = (0.7, 0.15, 0.15),
                         stratify=False, generator=None) -> tuple[Subset, Subset, Subset]:
    """Train / validation / test subsets, 70 / 15 / 15 by default.

    ``stratify=True`` keeps each class's share equal across the three splits (labels are
    the dataset's ``targets``, or a ``TensorDataset``'s last tensor, or each sample's last
    item); ``stratify`` may also be an array of labels. Within a class the counts follow
    the same floor-plus-round-robin rule as :func:`random_split`. Each split comes back
    in random order.

    >>> import numpy as np
    >>> from kiln.data import ArrayDataset, train_val_test_split
    >>> ds = ArrayDataset(np.zeros((100, 2)), np.repeat([0, 1], [80, 20]))
    >>> tr, va, te = train_val_test_split(ds, stratify=True, generator=0)
    >>> [len(tr), len(va), len(te)], [int(ds.targets[s.indices].sum()) for s in (tr, va, te)]
    ([70, 15, 15], [14, 3, 3])
    """
    fractions = [float(f) for f in fractions]
    if len(fractions) != 3 or not math.isclose(sum(fractions), 1.0) or min(fractions) < 0:
        raise ValueError(f"train_val_test_split: expected three non-negative fractions summing "
                         f"to 1, got {fractions}")
    g = _as_generator(generator)
    n = len(dataset)
    if stratify is False or stratify is None:
        counts = _split_lengths(n, fractions, "train_val_test_split")
        perm = g.permutation(n)
        bounds = np.cumsum([0] + counts)
        return tuple(Subset(dataset, perm[bounds[i]:bounds[i + 1]]) for i in range(3))
    labels = _labels_of(dataset) if stratify is True else _to_numpy(stratify).reshape(-1)
    if labels.shape[0] != n:
        raise ValueError(f"train_val_test_split: {labels.shape[0]} stratify labels for a "
                         f"dataset of {n} samples")
    classes, inverse = np.unique(labels, return_inverse=True)
    sizes = np.bincount(inverse, minlength=classes.size)
    per_class = _stratified_counts(sizes, fractions, _split_lengths(n, fractions, "split"))
    parts: list[list[np.ndarray]] = [[], [], []]
    for c in range(classes.size):
        idx = np.flatnonzero(inverse == c)
        idx = idx[g.permutation(idx.size)]
        bounds = np.cumsum([0] + per_class[c])
        for i in range(3):
            parts[i].append(idx[bounds[i]:bounds[i + 1]])
    out = []
    for p in parts:
        idx = np.concatenate(p) if p else np.zeros(0, np.int64)
        out.append(Subset(dataset, idx[g.permutation(idx.size)]))
    return tuple(out)
