"""Label-noise injection for noisy-label studies (symmetric and pair-flip), deterministic by seed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from fr_lightning.data.sources.base import FaceSet


def _flip_indices(n: int, rate: float, seed: int) -> tuple[np.ndarray, np.random.Generator]:
    """The ``round(rate·n)`` indices to corrupt, chosen without replacement, and the generator used."""
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"label noise rate must be in [0, 1], got {rate}")
    rng = np.random.default_rng(seed)
    count = int(round(rate * n))
    return np.sort(rng.choice(n, size=count, replace=False)), rng


def symmetric_noise(labels: np.ndarray, rate: float, num_classes: int, seed: int = 0) -> np.ndarray:
    """Return a copy of ``labels`` with exactly ``round(rate·N)`` labels moved to another class.

    Each corrupted label moves to a class drawn uniformly among the ``num_classes − 1`` others,
    so a flipped label never equals the true one.

    Args:
        labels: true labels ``[N]`` in ``[0, num_classes)``.
        rate: fraction of labels to corrupt.
        num_classes: number of classes (>= 2).
        seed: the same seed always corrupts the same samples the same way.
    """
    if num_classes < 2:
        raise ValueError("symmetric_noise needs num_classes >= 2")
    clean = np.asarray(labels, dtype=np.int64)
    idx, rng = _flip_indices(len(clean), rate, seed)
    noisy = clean.copy()
    noisy[idx] = (clean[idx] + rng.integers(1, num_classes, size=len(idx))) % num_classes
    return noisy


def pairflip_noise(labels: np.ndarray, rate: float, num_classes: int, seed: int = 0) -> np.ndarray:
    """Return a copy of ``labels`` with exactly ``round(rate·N)`` labels moved to the next class ``(y + 1) mod C``.

    Args:
        labels: true labels ``[N]`` in ``[0, num_classes)``.
        rate: fraction of labels to corrupt.
        num_classes: number of classes (>= 2).
        seed: the same seed always corrupts the same samples.
    """
    if num_classes < 2:
        raise ValueError("pairflip_noise needs num_classes >= 2")
    clean = np.asarray(labels, dtype=np.int64)
    idx, _ = _flip_indices(len(clean), rate, seed)
    noisy = clean.copy()
    noisy[idx] = (clean[idx] + 1) % num_classes
    return noisy


@dataclass
class LabelNoise:
    """Label noise injected into the training set (for studies of noise-robust training).

    Args:
        kind: ``symmetric`` (uniform over the other classes) or ``pairflip`` (to the next class).
        rate: fraction of training samples whose label is corrupted.
        seed: which samples are corrupted, and how (independent of the run's seed).
    """

    kind: Literal["symmetric", "pairflip"] = "symmetric"
    rate: float = 0.4
    seed: int = 0

    def apply(self, labels: np.ndarray, num_classes: int) -> np.ndarray:
        """The noisy copy of ``labels``."""
        if self.kind == "symmetric":
            return symmetric_noise(labels, self.rate, num_classes, self.seed)
        if self.kind == "pairflip":
            return pairflip_noise(labels, self.rate, num_classes, self.seed)
        raise ValueError(f"data.label_noise.kind must be 'symmetric' or 'pairflip', got {self.kind!r}")


class NoisyLabelDataset(FaceSet):
    """Wraps a training dataset: each sample's ``labels`` becomes the noisy label, ``clean_labels`` the true one.

    The clean label is for diagnostics only (precision of a noisy-label method's selection); no
    loss reads it.

    Args:
        dataset: the training set (its ``labels`` are the clean ones).
        noise: the noise to inject.
        num_classes: number of classes of the dataset.
    """

    def __init__(self, dataset: FaceSet, noise: LabelNoise, num_classes: int) -> None:
        if not isinstance(dataset, FaceSet):
            raise ValueError(
                f"data.label_noise needs a map-style training set that lists its labels (a FaceSet); "
                f"{type(dataset).__name__} is not one"
            )
        self.dataset = dataset
        self.clean = np.asarray(dataset.labels, dtype=np.int64)
        self.labels = noise.apply(self.clean, num_classes)

    def __len__(self) -> int:
        return len(self.dataset)

    def _relabel(self, sample: dict[str, Any], index: int) -> dict[str, Any]:
        out = dict(sample)
        out["clean_labels"] = int(self.clean[index])
        out["labels"] = int(self.labels[index])
        return out

    def __getitems__(self, indices: list[int]) -> list[dict[str, Any]]:
        fetch = getattr(self.dataset, "__getitems__", None)
        samples = fetch(list(indices)) if fetch is not None else [self.dataset[i] for i in indices]
        return [self._relabel(s, int(i)) for s, i in zip(samples, indices)]

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self._relabel(self.dataset[index], int(index))
