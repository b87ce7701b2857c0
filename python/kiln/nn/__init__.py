"""``kiln.nn``: Module, Parameter, containers, layers, losses, ``functional`` and ``init``
under ``torch.nn``'s names.

Example:
    >>> import kiln
    >>> from kiln import nn
    >>> net = nn.Sequential(nn.Flatten(), nn.Identity())
    >>> net
    Sequential(
      (0): Flatten(start_dim=1, end_dim=-1)
      (1): Identity()
    )
"""

from kiln.nn import functional, init

# attention, embedding
from kiln.nn.attention import MultiheadAttention  # noqa: E402
from kiln.nn.container import Flatten, Identity, ModuleDict, ModuleList, Sequential, Unflatten
from kiln.nn.module import Module
from kiln.nn.parameter import Parameter

# isort: split
# layers: linear, activations, losses
from kiln.nn.activation import (
    ELU,
    GELU,
    Hardtanh,
    LeakyReLU,
    LogSoftmax,
    Mish,
    ReLU,
    Sigmoid,
    SiLU,
    Softmax,
    Softmin,
    Softplus,
    Tanh,
)
from kiln.nn.linear import Bilinear, Linear
from kiln.nn.loss import (
    BCELoss,
    BCEWithLogitsLoss,
    CosineEmbeddingLoss,
    CrossEntropyLoss,
    HuberLoss,
    KLDivLoss,
    L1Loss,
    MSELoss,
    NLLLoss,
    SmoothL1Loss,
)

# rnn
from kiln.nn.rnn import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNBase, RNNCell, RNNCellBase  # noqa: E402,F401
from kiln.nn.sparse import Embedding  # noqa: E402

# isort: split
# layers: normalization, pooling, dropout
from kiln.nn.dropout import Dropout, Dropout1d, Dropout2d, Dropout3d  # noqa: F401
from kiln.nn.normalization import (  # noqa: F401
    BatchNorm1d,
    BatchNorm2d,
    BatchNorm3d,
    GroupNorm,
    LayerNorm,
)
from kiln.nn.pooling import (  # noqa: F401
    AdaptiveAvgPool1d,
    AdaptiveAvgPool2d,
    AvgPool1d,
    AvgPool2d,
    MaxPool1d,
    MaxPool2d,
)

# isort: split
# utils: gradient clipping (clip_grad_norm_, clip_grad_value_)
from kiln.nn import utils  # noqa: E402, F401

# isort: split
# transformer: encoder / decoder layers and stacks, Transformer
from kiln.nn.transformer import (  # noqa: E402, F401
    Transformer,
    TransformerDecoder,
    TransformerDecoderLayer,
    TransformerEncoder,
    TransformerEncoderLayer,
)
