"""Graph ops by family; each op is a Function (forward on arrays, backward in kiln ops
or a dedicated kernel) plus a lowercase function."""

# attention, embedding
from kiln.ops import (  # noqa: E402, F401
    activation,
    attention,
    elementwise,
    embedding,
    indexing,
    loss,
    matmul,
    movement,
    reduce,
)
