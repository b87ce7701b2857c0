"""What ``kiln.train.fit`` / ``evaluate`` need from ``kiln.distributed`` when a job runs on
several ranks: which rank this is, sums and maxima of per-rank numbers (metrics), objects
gathered to every rank (RNG states, outputs for custom metrics), and the plain module
inside a ``DistributedDataParallel`` wrapper (what a checkpoint stores).

Nothing here imports mpi4py unless ``kiln.distributed`` has been initialised, so a
single-process run never needs it. Every function is a collective when the world has more
than one rank: all ranks must call it, in the same order (``fit`` does, since every rank
runs the same loop with the same number of epochs).
"""

from __future__ import annotations

import numpy as np


class World:
    """This process's place in the job: ``rank``, ``size``, ``active`` (size > 1)."""

    def __init__(self) -> None:
        self.rank, self.size = 0, 1
        try:
            import kiln.distributed as dist
        except ImportError:  # pragma: no cover -- kiln.distributed imports nothing optional
            return
        if dist.is_initialized():
            self.rank, self.size = dist.get_rank(), dist.get_world_size()

    @property
    def active(self) -> bool:
        return self.size > 1

    @property
    def main(self) -> bool:
        """Rank 0: the one that prints, writes checkpoints and files."""
        return self.rank == 0

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sums over ranks (float64; exact for counts below 2**53)."""
        if not self.active:
            return list(values)
        import kiln
        import kiln.distributed as dist

        t = kiln.from_numpy(np.asarray(values, np.float64))
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.numpy().tolist()

    def max(self, value: float) -> float:
        if not self.active:
            return value
        import kiln
        import kiln.distributed as dist

        t = kiln.from_numpy(np.asarray([value], np.float64))
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return float(t.numpy()[0])

    def all_gather_object(self, obj) -> list:
        """``[obj of rank 0, obj of rank 1, ...]`` on every rank."""
        if not self.active:
            return [obj]
        import kiln.distributed as dist

        out = [None] * self.size
        dist.all_gather_object(out, obj)
        return out


def unwrap(model):
    """The module inside a ``DistributedDataParallel`` (or ``DataParallel``) wrapper, else
    ``model`` itself: checkpoints hold its state so they load into a plain model."""
    names = {c.__name__ for c in type(model).__mro__}
    if names & {"DistributedDataParallel", "DataParallel"} and hasattr(model, "module"):
        return model.module
    return model
