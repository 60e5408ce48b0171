"""Training callbacks that are not methods: numerical guard, LR control and loss-function search."""

from fr_lightning.callbacks.loss_search import GaussianPolicy, LossSearch
from fr_lightning.callbacks.mhlr import MHLR, MHLRState
from fr_lightning.callbacks.nan_guard import NanGuard, NonFiniteTrainingError

__all__ = ["GaussianPolicy", "LossSearch", "MHLR", "MHLRState", "NanGuard", "NonFiniteTrainingError"]
