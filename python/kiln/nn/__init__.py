"""kiln.nn: functional ops now; Module and layers arrive with the layers issue."""

from kiln.nn import (
    functional,  # noqa: F401
    utils,  # noqa: E402, F401  (clip_grad_norm_, clip_grad_value_)
)
