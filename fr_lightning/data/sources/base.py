"""Base classes of the pluggable data sources (what the data module trains and validates on).

Each source is a small class with a typed ``__init__`` so YAML can select it by ``class_path``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from torch.utils.data import Dataset

from fr_lightning.data.pairs import PairSet

__all__ = ["TrainSource", "ValSource"]


class TrainSource(ABC):
    """Base of training sources: a dataset of dict samples and the number of classes."""

    @property
    @abstractmethod
    def num_classes(self) -> int:
        """Number of identities (linked into the classifier)."""

    @abstractmethod
    def dataset(self, image_size: int, hflip: bool) -> Dataset:
        """The training dataset at ``image_size`` px."""


class ValSource(ABC):
    """Base of verification sources: builds a :class:`PairSet`."""

    @abstractmethod
    def build(self, image_size: int) -> PairSet:
        """The pair set at ``image_size`` px."""
