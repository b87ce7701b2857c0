"""kiln.distributed: data-parallel training across processes and hosts over MPI.

The API is ``torch.distributed``'s (``init_process_group``, ``all_reduce``, ...) with
one backend, ``"mpi"``: processes are started by ``mpirun``/``srun``/``kiln launch``,
and CPU tensors move through Open MPI (via ``mpi4py``, the ``kiln[distributed]``
extra). ``kiln.nn.parallel.DistributedDataParallel`` and
``kiln.data.DistributedSampler`` build on it.
"""

from kiln.distributed.collectives import (
    ReduceOp,
    Work,
    all_gather,
    all_gather_into_tensor,
    all_gather_object,
    all_reduce,
    barrier,
    broadcast,
    broadcast_object_list,
    destroy_process_group,
    get_backend,
    get_rank,
    get_world_size,
    init_process_group,
    is_available,
    is_initialized,
    reduce_scatter,
    reduce_scatter_tensor,
)

__all__ = [
    "ReduceOp", "Work", "all_gather", "all_gather_into_tensor", "all_gather_object", "all_reduce",
    "barrier", "broadcast", "broadcast_object_list", "destroy_process_group", "get_backend",
    "get_rank", "get_world_size", "init_process_group", "is_available", "is_initialized",
    "reduce_scatter", "reduce_scatter_tensor",
]
