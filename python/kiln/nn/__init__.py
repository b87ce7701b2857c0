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
from kiln.nn.attention import MultiheadAttention
from kiln.nn.container import Flatten, Identity, ModuleDict, ModuleList, Sequential, Unflatten
from kiln.nn.conv import Conv1d, Conv2d, ConvTranspose1d, ConvTranspose2d
from kiln.nn.dropout import Dropout, Dropout1d, Dropout2d, Dropout3d
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
from kiln.nn.module import Module
from kiln.nn.normalization import BatchNorm1d, BatchNorm2d, BatchNorm3d, GroupNorm, LayerNorm
from kiln.nn.parameter import Parameter
from kiln.nn.pooling import (
    AdaptiveAvgPool1d,
    AdaptiveAvgPool2d,
    AvgPool1d,
    AvgPool2d,
    MaxPool1d,
    MaxPool2d,
)
from kiln.nn.rnn import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNBase, RNNCell, RNNCellBase
from kiln.nn.sparse import Embedding
from kiln.nn.transformer import (
    Transformer,
    TransformerDecoder,
    TransformerDecoderLayer,
    TransformerEncoder,
    TransformerEncoderLayer,
)

# isort: split
# gradient clipping (clip_grad_norm_, clip_grad_value_)
from kiln.nn import utils

# isort: split
# data parallelism (nn.parallel.DistributedDataParallel, SyncBatchNorm)
from kiln.nn import parallel
from kiln.nn.sync_batchnorm import SyncBatchNorm
