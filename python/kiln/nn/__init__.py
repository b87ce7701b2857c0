"""kiln.nn: functional ops now; Module and layers arrive with the layers issue."""

from kiln.nn import functional  # noqa: F401
