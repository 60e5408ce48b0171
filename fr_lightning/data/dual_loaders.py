"""F²C's dual loaders (identity-based + instance-based sampling) as one resumable map-style dataset.

The authors (tiandunx/FFC, ``main.py``) draw each step from two loaders: an *identity* loader
giving two images of each of ``B`` identities (every identity once per pass, restarted when
exhausted) and an *instance* loader giving ``B`` random images, cut in two halves. The probe view
``x`` is ``[first images of the identities; instance half 1]`` and the gallery view ``y`` is
``[second images; instance half 2]``, so identities recur in the pool and the instance rows
supply negatives [exact].

Here one *item* of :class:`DualLoaderDataset` holds one instance pair plus ``identity_pairs``
identity pairs (2 by default: the authors' ratio of ``B`` identity pairs to ``B/2`` instance
pairs), and a batch of items is laid out as ``images = [x; y]`` (the halves
:class:`~fr_lightning.classifiers.F2C` splits). Because it is one map-style dataset, the
training loader's seeded, exactly resumable sampler (``data/resume.py``) is used unchanged
[reconstruction: the authors run two independent loaders]. The instance order is a seeded
permutation paired two by two; identity ``t`` of item ``j`` is ``order[(j * identity_pairs + t) %
identities]`` of a seeded identity order, its two images drawn by a generator seeded with
``(seed, j, t)``, so an item is the same whenever it is loaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fr_lightning.batch import FaceBatch, collate_faces
from fr_lightning.data.sources.base import FaceSet


class DualLoaders:
    """Data-module option ``data.dual_loaders``: serve F²C's identity + instance pairs.

    Args:
        identity_pairs: identity pairs per instance pair in each item (authors' ratio: 2).
    """

    def __init__(self, identity_pairs: int = 2) -> None:
        if identity_pairs < 0:
            raise ValueError(f"data.dual_loaders.identity_pairs must be >= 0, got {identity_pairs}")
        self.identity_pairs = int(identity_pairs)

    def wrap(self, dataset: FaceSet, seed: int = 0) -> "DualLoaderDataset":
        """The dual-loader view of a map-style training set (its ``labels`` give the identities)."""
        if not isinstance(dataset, FaceSet):
            raise ValueError(
                f"data.dual_loaders needs a map-style training set that lists its labels (a FaceSet from "
                f"SyntheticSource, RecordIOSource or FolderSource); {type(dataset).__name__} is not one"
            )
        return DualLoaderDataset(dataset, np.asarray(dataset.labels, dtype=np.int64), self.identity_pairs, seed)


class DualLoaderDataset(FaceSet):
    """Items of one instance pair and ``identity_pairs`` identity pairs; ``collate`` makes ``[x; y]`` batches.

    Args:
        dataset: the training set (dict samples).
        labels: label of each sample of ``dataset``.
        identity_pairs: identity pairs per item.
        seed: seed of the instance pairing, the identity order and the image draws.
    """

    def __init__(self, dataset: FaceSet, labels: np.ndarray, identity_pairs: int = 2, seed: int = 0) -> None:
        if len(labels) < 2:
            raise ValueError("data.dual_loaders needs at least two training samples")
        self.dataset = dataset
        self.labels = labels
        self.identity_pairs = identity_pairs
        self.seed = int(seed)
        rng = np.random.default_rng([self.seed, 0xF2C])
        self.instances = rng.permutation(len(labels))
        identities, inverse = np.unique(labels, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        bounds = np.searchsorted(inverse[order], np.arange(len(identities) + 1))
        self.members = [order[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
        self.identity_order = rng.permutation(len(identities))

    def __len__(self) -> int:
        return len(self.labels) // 2

    def indices(self, item: int) -> tuple[list[int], list[int]]:
        """Dataset indices of the ``x`` part and the ``y`` part of ``item`` (identity pairs first)."""
        x: list[int] = []
        y: list[int] = []
        for t in range(self.identity_pairs):
            members = self.members[self.identity_order[(item * self.identity_pairs + t) % len(self.members)]]
            rng = np.random.default_rng([self.seed, item, t])
            a, b = rng.choice(len(members), size=2, replace=False) if len(members) >= 2 else (0, 0)
            x.append(int(members[a]))
            y.append(int(members[b]))
        x.append(int(self.instances[2 * item]))
        y.append(int(self.instances[2 * item + 1]))
        return x, y

    def _load(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        many = getattr(self.dataset, "__getitems__", None)
        return list(many(list(indices))) if many is not None else [self.dataset[i] for i in indices]

    def __getitem__(self, item: int) -> dict[str, list[Any]]:
        """Every field as a list over the item's samples: ``x`` part then ``y`` part."""
        x, y = self.indices(int(item))
        samples = self._load(x + y)
        return {key: [s[key] for s in samples] for key in samples[0]}

    def collate(self, items: Sequence[dict[str, list[Any]]]) -> FaceBatch:  # type: ignore[override]
        """Batch of items as one :class:`FaceBatch` with rows ``[x of every item; y of every item]``."""
        half = self.identity_pairs + 1
        rows: list[dict[str, Any]] = []
        for part in (slice(0, half), slice(half, 2 * half)):
            for item in items:
                keys = list(item)
                for values in zip(*(item[k][part] for k in keys)):
                    rows.append(dict(zip(keys, values)))
        return collate_faces(rows)
