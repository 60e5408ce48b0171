"""Data sources, the data module and verification pair sets."""

from fr_lightning.data.datamodule import FaceDataModule
from fr_lightning.data.noise import LabelNoise, pairflip_noise, symmetric_noise
from fr_lightning.data.pairs import PairImages, PairSet
from fr_lightning.data.real_sources import BinPairs, FolderSource, RecordIOSource, StreamingSource
from fr_lightning.data.sources import SyntheticPairs, SyntheticSource, TrainSource, ValSource
from fr_lightning.data.transforms import Augment

__all__ = [
    "Augment",
    "BinPairs",
    "FaceDataModule",
    "FolderSource",
    "LabelNoise",
    "PairImages",
    "PairSet",
    "RecordIOSource",
    "StreamingSource",
    "SyntheticPairs",
    "SyntheticSource",
    "TrainSource",
    "ValSource",
    "pairflip_noise",
    "symmetric_noise",
]
