"""Graph ops by family; each op is a Function (forward on arrays, backward in kiln ops
or a dedicated kernel) plus a lowercase function."""

from kiln.ops import (
    activation,
    attention,
    conv,
    elementwise,
    embedding,
    indexing,
    loss,
    matmul,
    movement,
    reduce,
    rnn,
)
