"""``kiln.nn.parallel``: ``DistributedDataParallel`` over ``kiln.distributed`` (MPI).

>>> from kiln.nn.parallel import DistributedDataParallel
>>> DistributedDataParallel.__name__
'DistributedDataParallel'
"""

from kiln.nn.parallel.distributed import DistributedDataParallel

__all__ = ["DistributedDataParallel"]
