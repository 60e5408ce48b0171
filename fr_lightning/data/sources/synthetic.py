"""Pluggable data sources: what the data module trains and validates on.

Each source is a small class with a typed ``__init__`` so YAML can select it by ``class_path``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Literal

from torch.utils.data import Dataset

from fr_lightning.data.pairs import PairSet
from fr_lightning.data.synthetic import FaceRenderer
from fr_lightning.data.synthetic_sets import SyntheticFaceDataset, synthetic_pairs


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


class SyntheticSource(TrainSource):
    """Faces from the built-in parametric renderer (the default; nothing is downloaded).

    Args:
        num_identities: identities in the training set.
        samples_per_identity: images per identity (one epoch = ``num_identities × samples_per_identity``).
        seed: renderer seed (fixes every identity's look).
        group_probs: training mix of the 4 demographic groups (skewed so a bias exists).
        profile_prob: fraction of samples drawn as profiles (|yaw| up to ``max_yaw``).
        max_yaw: largest |yaw| in degrees.
        nuisance_scale: strength of lighting, clutter, occluders, blur, jitter (0 = clean faces).
    """

    def __init__(
        self,
        num_identities: int = 1000,
        samples_per_identity: int = 50,
        seed: int = 0,
        group_probs: tuple[float, float, float, float] = (0.55, 0.25, 0.12, 0.08),
        profile_prob: float = 0.15,
        max_yaw: float = 80.0,
        nuisance_scale: float = 1.0,
    ) -> None:
        if num_identities < 2 or samples_per_identity < 1:
            raise ValueError("data.train: num_identities must be >= 2 and samples_per_identity >= 1")
        self.num_identities = num_identities
        self.samples_per_identity = samples_per_identity
        self.seed = seed
        self.group_probs = tuple(group_probs)
        self.profile_prob = profile_prob
        self.max_yaw = max_yaw
        self.nuisance_scale = nuisance_scale

    @property
    def num_classes(self) -> int:
        return self.num_identities

    def renderer(self, image_size: int) -> FaceRenderer:
        """The renderer these settings describe."""
        return FaceRenderer(
            seed=self.seed,
            image_size=image_size,
            group_probs=self.group_probs,
            profile_prob=self.profile_prob,
            max_yaw=self.max_yaw,
            nuisance_scale=self.nuisance_scale,
        )

    def dataset(self, image_size: int, hflip: bool) -> Dataset:
        return SyntheticFaceDataset(self.renderer(image_size), self.num_identities, self.samples_per_identity, hflip)


class SyntheticPairs(ValSource):
    """A synthetic verification set of held-out identities (``synth-lfw``, ``synth-cfpfp``, ...).

    Args:
        name: metric prefix, e.g. ``synth-lfw``.
        kind: ``standard``, ``cross_pose`` (frontal vs profile), ``lowres`` (one side degraded) or ``group``.
        pairs: number of pairs (6,000 like LFW).
        lowres_size: probe resolution in px for ``lowres``.
        group: demographic group for ``group`` sets.
        seed: renderer seed.
        set_seed: selects the held-out identities and samples of this set.
        nuisance_scale: nuisance strength of the rendered faces.
    """

    def __init__(
        self,
        name: str = "synth-lfw",
        kind: Literal["standard", "cross_pose", "lowres", "group"] = "standard",
        pairs: int = 6000,
        lowres_size: int = 12,
        group: int = 0,
        seed: int = 0,
        set_seed: int = 0,
        nuisance_scale: float = 1.0,
    ) -> None:
        self.name = name
        self.kind = kind
        self.pairs = pairs
        self.lowres_size = lowres_size
        self.group = group
        self.seed = seed
        self.set_seed = set_seed
        self.nuisance_scale = nuisance_scale

    def build(self, image_size: int) -> PairSet:
        renderer = FaceRenderer(seed=self.seed, image_size=image_size, nuisance_scale=self.nuisance_scale)
        return synthetic_pairs(
            renderer,
            self.name,
            kind=self.kind,
            pairs=self.pairs,
            lowres_size=self.lowres_size,
            group=self.group,
            set_seed=self.set_seed,
        )


def default_val_sets(pairs: int = 6000) -> list[ValSource]:
    """``synth-lfw``, ``synth-cfpfp`` and ``synth-lowres`` (each from its own held-out identities)."""
    return [
        SyntheticPairs("synth-lfw", "standard", pairs=pairs, set_seed=0),
        SyntheticPairs("synth-cfpfp", "cross_pose", pairs=pairs, set_seed=1),
        SyntheticPairs("synth-lowres", "lowres", pairs=pairs, set_seed=2),
    ]


def group_val_sets(pairs: int = 6000) -> list[ValSource]:
    """``synth-rfw-g0`` .. ``synth-rfw-g3``: one verification set per demographic group."""
    return [SyntheticPairs(f"synth-rfw-g{g}", "group", pairs=pairs, group=g, set_seed=10 + g) for g in range(4)]
