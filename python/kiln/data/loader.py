"""``DataLoader``: batches from a dataset, with seeded shuffling and a prefetch thread.

Order and randomness. Each ``iter(loader)`` starts an epoch: in the calling thread it
draws one 64-bit epoch seed from ``generator`` (a NumPy Generator or int seed given to the
loader) or, without one, from kiln's global generator. The epoch's permutation and every
random transform in it derive from that seed alone -- batch ``b`` runs its transforms
under ``Generator(Philox(key=epoch_seed, counter=b))``, published to the transforms
through :func:`kiln.data.transforms.current_generator` -- so the batches do not depend on
whether a background thread builds them, and ``kiln.manual_seed`` (or the loader's own
generator) replays an epoch exactly. ``kiln.train.fit`` checkpoints both generators,
which is what makes a resumed run bit-exact.

Prefetch. With ``prefetch_factor > 0`` (the default, 2) a background thread fetches and
collates up to that many batches ahead while the training step runs; the kernels release
the GIL, so fetching overlaps compute. ``prefetch_factor=0`` builds batches in the calling
thread. Leaving an epoch early (``break``) stops the thread.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np

from kiln.data import transforms as _tf
from kiln.data.dataset import _as_generator
from kiln.tensor import Tensor

__all__ = ["DataLoader", "default_collate"]


def _to_tensor(arr: np.ndarray) -> Tensor:
    from kiln.creation import from_numpy

    if arr.dtype.kind in "iu":
        arr = arr.astype(np.int64, copy=False)
    elif arr.dtype == np.float16:
        arr = arr.astype(np.float32)
    return from_numpy(np.ascontiguousarray(arr))


def default_collate(batch):
    """Stack a list of samples into a batch, as ``torch.utils.data.default_collate``:
    tensors and arrays stack on a new first dimension (integer arrays become int64
    tensors), Python numbers become a 1-d tensor, tuples / lists / dicts collate
    element-wise, strings stay a list.

    >>> import numpy as np
    >>> from kiln.data import default_collate
    >>> x, y = default_collate([(np.ones(2, np.float32), 0), (np.zeros(2, np.float32), 1)])
    >>> x.shape, y.tolist()
    (kiln.Size([2, 2]), [0, 1])
    """
    if not isinstance(batch, Sequence) or len(batch) == 0:
        raise ValueError("default_collate: expected a non-empty list of samples")
    first = batch[0]
    if isinstance(first, Tensor):
        from kiln.ops.movement import stack

        return stack(list(batch), 0)
    if isinstance(first, np.ndarray) or isinstance(first, np.generic):
        return _to_tensor(np.stack([np.asarray(b) for b in batch]))
    if isinstance(first, bool):
        return _to_tensor(np.asarray(batch, dtype=bool))
    if isinstance(first, int):
        return _to_tensor(np.asarray(batch, dtype=np.int64))
    if isinstance(first, float):
        return _to_tensor(np.asarray(batch, dtype=np.float32))
    if isinstance(first, (str, bytes)):
        return list(batch)
    if isinstance(first, Mapping):
        return {k: default_collate([b[k] for b in batch]) for k in first}
    if isinstance(first, (tuple, list)):
        if any(len(b) != len(first) for b in batch):
            raise ValueError("default_collate: each sample in the batch must have the same "
                             "number of items")
        out = [default_collate(list(items)) for items in zip(*batch)]
        return tuple(out) if isinstance(first, tuple) else out
    raise TypeError(f"default_collate: cannot collate samples of type {type(first).__name__}")


def _convert_batch(batch):
    """A batch fetched whole (``_fetch_batch``) as kiln tensors, like default_collate's."""
    if isinstance(batch, Tensor):
        return batch
    if isinstance(batch, np.ndarray):
        return _to_tensor(batch)
    if isinstance(batch, tuple):
        return tuple(_convert_batch(b) for b in batch)
    if isinstance(batch, list):
        return [_convert_batch(b) for b in batch]
    if isinstance(batch, Mapping):
        return {k: _convert_batch(v) for k, v in batch.items()}
    return batch


_DONE = object()


class DataLoader:
    """Iterate a dataset in batches, as ``torch.utils.data.DataLoader``.

    Args: ``batch_size`` (1; ``None`` yields single samples), ``shuffle`` (a fresh
    permutation per epoch), ``sampler`` / ``batch_sampler`` (iterables of indices / of
    index lists), ``collate_fn`` (``default_collate``), ``drop_last`` (drop a final
    short batch), ``generator`` (a ``numpy.random.Generator`` or int seed for the epoch
    seeds; default kiln's global generator), ``prefetch_factor`` (batches a background
    thread keeps ready; 0 for none). ``num_workers`` must be 0: kiln prefetches with a
    thread, not worker processes.

    >>> import kiln
    >>> from kiln.data import DataLoader, TensorDataset
    >>> ds = TensorDataset(kiln.arange(10))
    >>> [b[0].tolist() for b in DataLoader(ds, batch_size=4)]
    [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    >>> len(DataLoader(ds, batch_size=4, drop_last=True))
    2
    """

    def __init__(self, dataset, batch_size: int | None = 1, shuffle: bool | None = None,
                 sampler: Iterable | None = None, batch_sampler: Iterable | None = None,
                 num_workers: int = 0, collate_fn: Callable | None = None,
                 pin_memory: bool = False, drop_last: bool = False, timeout: float = 0,
                 worker_init_fn=None, multiprocessing_context=None, generator=None, *,
                 prefetch_factor: int | None = 2, persistent_workers: bool = False) -> None:
        if num_workers != 0:
            raise ValueError(f"DataLoader: num_workers={num_workers} is not supported; kiln "
                             "prefetches batches with a background thread (prefetch_factor)")
        if batch_size is not None and (int(batch_size) != batch_size or batch_size <= 0):
            raise ValueError(f"DataLoader: batch_size should be a positive integer or None, "
                             f"got {batch_size}")
        if batch_sampler is not None and (batch_size != 1 or shuffle or sampler is not None
                                          or drop_last):
            raise ValueError("DataLoader: batch_sampler option is mutually exclusive with "
                             "batch_size, shuffle, sampler, and drop_last")
        if sampler is not None and shuffle:
            raise ValueError("DataLoader: sampler option is mutually exclusive with shuffle")
        if batch_size is None and drop_last:
            raise ValueError("DataLoader: batch_size=None option disables auto-batching and "
                             "is mutually exclusive with drop_last")
        pf = 0 if prefetch_factor is None else int(prefetch_factor)
        if pf < 0:
            raise ValueError(f"DataLoader: prefetch_factor must be >= 0, got {prefetch_factor}")
        self.dataset = dataset
        self.batch_size = None if batch_size is None else int(batch_size)
        self.shuffle = bool(shuffle)
        self.sampler = sampler
        self.batch_sampler = batch_sampler
        self.num_workers = 0
        self.collate_fn = collate_fn
        self.drop_last = bool(drop_last)
        self.generator = None if generator is None else _as_generator(generator)
        self.prefetch_factor = pf
        self.timeout = timeout

    # ---- the epoch's order -------------------------------------------------------------
    def _epoch_seed(self) -> int:
        g = self.generator if self.generator is not None else _as_generator(None)
        return int(g.integers(0, 2**63 - 1, dtype=np.int64))

    def _batches(self, seed: int) -> list:
        if self.batch_sampler is not None:
            return [np.asarray(list(b), dtype=np.int64) for b in self.batch_sampler]
        if self.sampler is not None:
            order = np.asarray(list(self.sampler), dtype=np.int64)
        elif self.shuffle:
            order = np.random.Generator(np.random.Philox(key=seed)).permutation(len(self.dataset))
        else:
            order = np.arange(len(self.dataset))
        if self.batch_size is None:
            return [int(i) for i in order]
        bs = self.batch_size
        stop = (len(order) // bs) * bs if self.drop_last else len(order)
        return [order[i:i + bs] for i in range(0, stop, bs)]

    def __len__(self) -> int:
        if self.batch_sampler is not None:
            return len(self.batch_sampler)
        n = len(self.sampler) if self.sampler is not None else len(self.dataset)
        if self.batch_size is None:
            return n
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    # ---- building one batch ------------------------------------------------------------
    def _fetch(self, idx):
        if self.batch_size is None and self.batch_sampler is None:
            item = self.dataset[idx]
            return item if self.collate_fn is None else self.collate_fn(item)
        fetch = getattr(self.dataset, "_fetch_batch", None) if self.collate_fn is None else None
        if fetch is not None:
            return _convert_batch(fetch(idx))
        collate = self.collate_fn or default_collate
        return collate([self.dataset[int(i)] for i in idx])

    def _make(self, seed: int, b: int, idx):
        with _tf.use_generator(np.random.Generator(np.random.Philox(key=seed, counter=b))):
            return self._fetch(idx)

    def __iter__(self):
        seed = self._epoch_seed()
        batches = self._batches(seed)
        if self.prefetch_factor == 0 or len(batches) <= 1:
            return (self._make(seed, b, idx) for b, idx in enumerate(batches))
        return _PrefetchIter(self, seed, batches)

    def __repr__(self) -> str:
        return (f"DataLoader(samples={len(self.dataset)}, batch_size={self.batch_size}, "
                f"shuffle={self.shuffle}, drop_last={self.drop_last}, "
                f"prefetch_factor={self.prefetch_factor})")


class _PrefetchIter:
    """Batches built by a daemon thread into a bounded queue; errors re-raise in the caller."""

    def __init__(self, loader: DataLoader, seed: int, batches: list) -> None:
        self._q: queue.Queue = queue.Queue(maxsize=loader.prefetch_factor)
        self._stop = threading.Event()
        self._n = len(batches)
        self._done = False

        def work():
            try:
                for b, idx in enumerate(batches):
                    if self._stop.is_set():
                        return
                    item = (True, loader._make(seed, b, idx))
                    while not self._stop.is_set():
                        try:
                            self._q.put(item, timeout=0.1)
                            break
                        except queue.Full:
                            continue
            except BaseException as exc:  # noqa: BLE001 -- handed to the consumer
                self._q.put((False, exc))
                return
            self._q.put((True, _DONE))

        self._thread = threading.Thread(target=work, name="kiln-prefetch", daemon=True)
        self._thread.start()

    def __iter__(self):
        return self

    def __len__(self) -> int:
        return self._n

    def __next__(self):
        if self._done:
            raise StopIteration
        ok, item = self._q.get()
        if not ok:
            self.close()
            raise item
        if item is _DONE:
            self.close()
            raise StopIteration
        return item

    def close(self) -> None:
        self._done = True
        self._stop.set()
        while True:  # unblock a producer waiting on a full queue
            try:
                self._q.get_nowait()
            except queue.Empty:
                break
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def __del__(self) -> None:
        try:
            self._stop.set()
        except Exception:  # noqa: BLE001 -- interpreter shutdown
            pass
