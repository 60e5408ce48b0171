"""Insightface RecordIO (``train.rec``, ``train.idx``, ``property``) as a training source.

The one read path: :meth:`RecordIOSet.read <fr_lightning.data.formats.recordio_set.RecordIOSet.read>`
gives encoded bytes and labels, :class:`~fr_lightning.data.sources.samples.FaceSamples` decodes
and augments them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fr_lightning.data.formats.recordio_set import RecordIOSet
from fr_lightning.data.sources.base import MapSource
from fr_lightning.data.sources.samples import FaceSamples, SkipCounter
from fr_lightning.data.sources.side_files import side_data
from fr_lightning.data.transforms import Augment

__all__ = ["RecordIOFaces", "RecordIOSource"]


class RecordIOFaces(FaceSamples):
    """Training samples from a RecordIO folder (a :class:`FaceSamples` over a :class:`RecordIOSet`).

    Args:
        records: The RecordIO set (supplies keys, ``num_classes`` and the reader).
        image_size: Output side in px.
        augment: Augmentation.
        landmarks: Optional ``[N, 5, 2]`` landmarks (``records.keys`` order).
        groups: Optional ``[N]`` groups.
        skip_corrupt: Skip unreadable records instead of raising.
        skip_counter: Where skipped records are counted (default: a counter of its own).
    """

    records: RecordIOSet

    def __init__(
        self,
        records: RecordIOSet,
        image_size: int,
        augment: Augment,
        landmarks: np.ndarray | None = None,
        groups: np.ndarray | None = None,
        skip_corrupt: bool = False,
        skip_counter: SkipCounter | None = None,
    ) -> None:
        super().__init__(records, records.num_classes, image_size, augment, landmarks, groups, skip_corrupt, skip_counter)
        self.keys = records.keys


class RecordIOSource(MapSource):
    """Insightface RecordIO training set (``train.rec``, ``train.idx``, ``property``), read without mxnet.

    ``num_classes`` comes from ``property`` (else the identity records, else max label + 1).

    Args:
        root: Folder holding ``train.rec``, ``train.idx`` and ``property``.
        skip_corrupt: Skip unreadable records (logged, counted as ``data/skipped``) instead of stopping.
        landmarks: Optional landmarks side file (``.npy`` or text ``key x1 y1 ... x5 y5``; a
            relative path is looked up in ``root``); enables PoseFace-style methods.
        group: Optional group side file (``.npy`` or text ``key group``), for GABN / fairness.
        augment: Training augmentation (default: horizontal flip as the data module's ``hflip``).
    """

    def __init__(
        self,
        root: str = "data/synth",
        skip_corrupt: bool = False,
        landmarks: str | None = None,
        group: str | None = None,
        augment: Augment | None = None,
    ) -> None:
        self.root = Path(root)
        self.skip_corrupt = skip_corrupt
        self.landmarks = landmarks
        self.group = group
        self.augment = augment
        self._records: RecordIOSet | None = None
        self.skip_counter = SkipCounter() if skip_corrupt else None

    @property
    def records(self) -> RecordIOSet:
        """The underlying RecordIO dataset (opened on first use)."""
        if self._records is None:
            if not self.root.is_dir():
                raise FileNotFoundError(f"RecordIO folder not found: {self.root} (write one with `fr data synth`)")
            self._records = RecordIOSet(self.root)
        return self._records

    @property
    def num_classes(self) -> int:
        return self.records.num_classes

    def dataset(self, image_size: int, hflip: bool) -> RecordIOFaces:
        rec = self.records
        lm, grp = side_data(self.root, self.landmarks, self.group, rec.keys, str(rec.rec_path))
        augment = self.augment if self.augment is not None else Augment(hflip=hflip)
        return RecordIOFaces(rec, image_size, augment, lm, grp, self.skip_corrupt, self.skip_counter)
