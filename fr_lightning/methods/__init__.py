"""Training methods, each a `Method` callback over a functional core."""

from fr_lightning.methods.base import Method, check_methods

__all__ = ["Method", "check_methods"]
