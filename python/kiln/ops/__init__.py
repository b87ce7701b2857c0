"""Graph ops by family; each op is a Function (forward on arrays, backward in kiln ops
or a dedicated kernel) plus a lowercase function."""

# norm / dropout / pool
from kiln.ops import (  # noqa: E402
    activation,
    dropout,
    elementwise,
    indexing,
    loss,
    matmul,
    movement,
    norm,
    reduce,
)
