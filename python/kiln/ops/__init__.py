"""Graph ops by family; each op is a Function (forward on arrays, backward in kiln ops
or a dedicated kernel) plus a lowercase function."""

from kiln.ops import (
    activation,
    elementwise,
    indexing,
    loss,
    matmul,
    movement,
    reduce,
)

# attention, embedding
from kiln.ops import attention  # noqa: E402, F401
