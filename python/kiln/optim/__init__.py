"""kiln.optim: optimizers (SGD, Adam, AdamW, RMSprop, Adagrad) and learning-rate schedules,
with PyTorch's names, arguments, defaults, state_dict format and update arithmetic; each
optimizer step is one compiled multi-tensor kernel call per parameter group.

Example:
    >>> import kiln
    >>> w = kiln.randn(4, requires_grad=True)
    >>> opt = kiln.optim.AdamW([w], lr=1e-2)
    >>> sched = kiln.optim.lr_scheduler.StepLR(opt, step_size=10, gamma=0.5)
    >>> for _ in range(3):
    ...     opt.zero_grad()
    ...     (w * w).sum().backward()
    ...     opt.step()
    ...     sched.step()
    >>> sched.get_last_lr()
    [0.01]
"""

from kiln.optim import lr_scheduler
from kiln.optim.adagrad import Adagrad
from kiln.optim.adam import Adam, AdamW
from kiln.optim.optimizer import Optimizer
from kiln.optim.rmsprop import RMSprop
from kiln.optim.sgd import SGD

__all__ = ["SGD", "Adagrad", "Adam", "AdamW", "Optimizer", "RMSprop", "lr_scheduler"]
