"""Training callbacks that are not methods: numerical guard and LR control."""

from fr_lightning.callbacks.mhlr import MHLR, MHLRState
from fr_lightning.callbacks.nan_guard import NanGuard, NonFiniteTrainingError

__all__ = ["MHLR", "MHLRState", "NanGuard", "NonFiniteTrainingError"]
