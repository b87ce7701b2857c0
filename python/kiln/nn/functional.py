"""``kiln.nn.functional``: the functional API under PyTorch's names.

Example:
    >>> import kiln
    >>> import kiln.nn.functional as F
    >>> F.relu(kiln.tensor([-1.0, 2.0]))
    tensor([0., 2.])
"""

from kiln.ops.activation import (  # noqa: F401
    elu,
    gelu,
    leaky_relu,
    log_softmax,
    relu,
    sigmoid,
    silu,
    softmax,
    softplus,
    tanh,
)
from kiln.ops.conv import conv1d, conv2d, conv_transpose1d, conv_transpose2d  # noqa: F401
from kiln.ops.loss import (  # noqa: F401
    binary_cross_entropy_with_logits,
    cross_entropy,
    l1_loss,
    mse_loss,
    nll_loss,
)
from kiln.ops.matmul import linear  # noqa: F401
from kiln.ops.movement import pad  # noqa: F401
