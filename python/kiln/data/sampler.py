"""``DistributedSampler``: each rank's share of a dataset's indices for data-parallel training.

Semantics are ``torch.utils.data.distributed.DistributedSampler``'s. With ``N`` samples and
``R`` replicas every rank gets ``num_samples`` indices:

- ``drop_last=False``: ``num_samples = ceil(N / R)``; the epoch's index list is padded to
  ``R * num_samples`` by repeating it from its start (so a few samples appear twice);
- ``drop_last=True``: ``num_samples = ceil((N - R) / R)`` when ``R`` does not divide ``N``
  (else ``N / R``); the list is cut to ``R * num_samples`` (its tail is dropped).

Rank ``r`` takes positions ``r, r + R, r + 2R, ...`` of that list, so the shards are
disjoint and, together, cover the padded list exactly once. Without shuffling the list is
``0 .. N-1`` and the shards equal torch's index for index. With ``shuffle=True`` the list is
a permutation drawn from kiln's generator (NumPy's ``default_rng``) seeded with
``seed + epoch`` -- the same on every rank, which is what keeps shards disjoint, but not
torch's ``randperm`` sequence. Call :meth:`set_epoch` at the start of each epoch
(``kiln.train.fit`` does) for a new order every epoch.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sized

import numpy as np

__all__ = ["DistributedSampler"]


class DistributedSampler:
    """Restrict data loading to this rank's shard of ``dataset`` (see the module docstring).

    ``num_replicas`` / ``rank`` default to ``kiln.distributed``'s world size and rank
    (its process group must be initialised); pass them to use the sampler without MPI.
    Give it to ``DataLoader(dataset, batch_size, sampler=...)`` (not with ``shuffle``).

    >>> from kiln.data import DistributedSampler
    >>> s = DistributedSampler(range(10), num_replicas=3, rank=1, shuffle=False)
    >>> len(s), list(s)
    (4, [1, 4, 7, 0])
    >>> s = DistributedSampler(range(10), num_replicas=3, rank=1, shuffle=False, drop_last=True)
    >>> list(s)
    [1, 4, 7]
    >>> s = DistributedSampler(range(10), num_replicas=2, rank=0, seed=1)
    >>> s.set_epoch(3); list(s) == list(DistributedSampler(range(10), 2, 0, seed=4))
    True
    """

    def __init__(self, dataset: Sized, num_replicas: int | None = None, rank: int | None = None,
                 shuffle: bool = True, seed: int = 0, drop_last: bool = False) -> None:
        if num_replicas is None or rank is None:
            import kiln.distributed as dist

            if not dist.is_initialized():
                raise RuntimeError(
                    "DistributedSampler: num_replicas/rank not given and the default process "
                    "group is not initialized; call kiln.distributed.init_process_group('mpi') "
                    "or pass num_replicas= and rank=")
            num_replicas = dist.get_world_size() if num_replicas is None else num_replicas
            rank = dist.get_rank() if rank is None else rank
        if int(num_replicas) != num_replicas or num_replicas < 1:
            raise ValueError(f"DistributedSampler: num_replicas must be a positive int, got "
                             f"{num_replicas}")
        if int(rank) != rank or not 0 <= rank < num_replicas:
            raise ValueError(f"DistributedSampler: invalid rank {rank}, rank should be in the "
                             f"interval [0, {int(num_replicas) - 1}]")
        self.dataset = dataset
        self.num_replicas, self.rank = int(num_replicas), int(rank)
        self.shuffle, self.seed, self.drop_last = bool(shuffle), int(seed), bool(drop_last)
        self.epoch = 0
        n = len(dataset)
        if self.drop_last and n % self.num_replicas != 0:
            self.num_samples = math.ceil((n - self.num_replicas) / self.num_replicas)
        else:
            self.num_samples = math.ceil(n / self.num_replicas)
        self.total_size = self.num_samples * self.num_replicas

    def _indices(self) -> np.ndarray:
        n = len(self.dataset)
        if self.shuffle:
            order = np.random.default_rng(self.seed + self.epoch).permutation(n)
        else:
            order = np.arange(n, dtype=np.int64)
        if self.total_size > n:  # pad by repeating from the start (several times if N < R)
            if n == 0:
                raise ValueError("DistributedSampler: cannot pad an empty dataset")
            order = np.resize(order, self.total_size)
        return order[:self.total_size][self.rank:self.total_size:self.num_replicas]

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices().tolist())

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch; with ``shuffle=True`` it seeds this epoch's permutation, so every
        rank must call it with the same value before iterating."""
        self.epoch = int(epoch)

    def __repr__(self) -> str:
        return (f"DistributedSampler(samples={len(self.dataset)}, num_replicas="
                f"{self.num_replicas}, rank={self.rank}, shuffle={self.shuffle}, "
                f"seed={self.seed}, drop_last={self.drop_last}, epoch={self.epoch})")
