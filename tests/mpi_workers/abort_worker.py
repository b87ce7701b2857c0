"""Rank 1 raises an uncaught exception while rank 0 waits in an all_reduce that rank 1
never joins: the excepthook must bring the whole job down (MPI_Abort), quickly.

usage: mpirun -n 2 python abort_worker.py
"""

import time

import kiln
import kiln.distributed as dist

dist.init_process_group("mpi")
if dist.get_rank() == 1:
    time.sleep(0.5)  # let rank 0 enter its collective first
    raise ValueError("boom on purpose in rank 1")
print("rank 0 entering all_reduce", flush=True)
dist.all_reduce(kiln.ones(4))
print("rank 0 left all_reduce (must not happen)", flush=True)
