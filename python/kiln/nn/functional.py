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

# attention
from kiln.ops.attention import scaled_dot_product_attention  # noqa: F401, E402
from kiln.ops.conv import conv1d, conv2d, conv_transpose1d, conv_transpose2d  # noqa: F401
from kiln.ops.embedding import embedding  # noqa: F401, E402
from kiln.ops.loss import (  # noqa: F401
    binary_cross_entropy_with_logits,
    cross_entropy,
    l1_loss,
    mse_loss,
    nll_loss,
)
from kiln.ops.matmul import linear  # noqa: F401
from kiln.ops.movement import pad  # noqa: F401

# isort: split
# losses (regression, binary, divergence), bilinear, hardtanh / mish / softmin
from kiln.nn.activation import hardtanh, mish, softmin  # noqa: F401
from kiln.ops.bilinear import bilinear  # noqa: F401
from kiln.ops.loss_binary import binary_cross_entropy  # noqa: F401
from kiln.ops.loss_divergence import cosine_embedding_loss, kl_div  # noqa: F401
from kiln.ops.loss_regression import huber_loss, smooth_l1_loss  # noqa: F401

# isort: split
# norm / dropout / pool
from kiln.ops.dropout import dropout, dropout1d, dropout2d, dropout3d  # noqa: F401
from kiln.ops.norm import batch_norm, group_norm, layer_norm  # noqa: F401
from kiln.ops.pool import (  # noqa: F401
    adaptive_avg_pool1d,
    adaptive_avg_pool2d,
    avg_pool1d,
    avg_pool2d,
    max_pool1d,
    max_pool2d,
)
