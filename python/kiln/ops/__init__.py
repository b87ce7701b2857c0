"""Graph ops by family; each op is a Function (forward on arrays, backward in kiln ops
or a dedicated kernel) plus a lowercase function."""

# rnn
from kiln.ops import (
    activation,
    elementwise,
    indexing,
    loss,
    matmul,
    movement,
    reduce,
    rnn,  # noqa: E402,F401
)
