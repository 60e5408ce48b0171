"""Data sources, the data module and verification pair sets."""

from fr_lightning.data.datamodule import FaceDataModule
from fr_lightning.data.pairs import PairImages, PairSet
from fr_lightning.data.sources import SyntheticPairs, SyntheticSource, TrainSource, ValSource

__all__ = ["FaceDataModule", "PairImages", "PairSet", "SyntheticPairs", "SyntheticSource", "TrainSource", "ValSource"]
