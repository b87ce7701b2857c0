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
from kiln.nn.container import Flatten, Identity, ModuleDict, ModuleList, Sequential, Unflatten
from kiln.nn.conv import Conv1d, Conv2d, ConvTranspose1d, ConvTranspose2d
from kiln.nn.module import Module
from kiln.nn.parameter import Parameter
