"""Training methods, each a `Method` callback over a functional core."""

from fr_lightning.methods.base import Method, check_methods
from fr_lightning.methods.lowres import MultiResolution

__all__ = ["Method", "MultiResolution", "check_methods"]
