"""Graph ops by family; each op is a Function (forward on arrays, backward in kiln ops
or a dedicated kernel) plus a lowercase function."""

from kiln.ops import (
    activation,
    conv,
    elementwise,
    indexing,
    loss,
    matmul,
    movement,
    reduce,
)
