"""Map-style training samples from real images, and the shared counter of skipped corrupt samples.

Every training dataset yields the same sample dicts as the synthetic one (``images`` float
``[3, S, S]`` normalised, ``labels`` int, optional ``landmarks`` ``[5, 2]`` and ``group``,
``index``), resizes images whose size differs from the data module's ``image_size`` and applies
an :class:`~fr_lightning.data.transforms.Augment`.
"""

from __future__ import annotations

import logging
import operator
from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.data import get_worker_info

from fr_lightning.data.errors import DataFormatError, check_label
from fr_lightning.data.formats.images import decode_image
from fr_lightning.data.resume import sample_keys
from fr_lightning.data.sources.base import FaceSet
from fr_lightning.data.transforms import Augment, SizeCheck, normalize_images, resize_face

__all__ = ["EncodedFaces", "SkipCounter", "FaceSamples"]

log = logging.getLogger(__name__)


class SkipCounter:
    """How many corrupt samples were skipped, visible to the main process across DataLoader workers.

    Counts live in a small shared-memory tensor, one slot per worker (slot 0: the main process),
    so workers never race on one number and the trainer side reads the sum (``data/skipped``).
    """

    SLOTS = 64

    def __init__(self) -> None:
        self.counts = torch.zeros(self.SLOTS, dtype=torch.int64).share_memory_()

    def add(self, n: int = 1) -> None:
        """Count ``n`` skipped samples in this process's slot."""
        info = get_worker_info()
        slot = 0 if info is None else 1 + info.id % (self.SLOTS - 1)
        self.counts[slot] += n

    @property
    def total(self) -> int:
        """Skipped samples so far, all processes together."""
        return int(self.counts.sum())


class EncodedFaces(Protocol):
    """Encoded face images addressed by position: what a :class:`FaceSamples` reads from.

    :class:`~fr_lightning.data.formats.recordio_set.RecordIOSet` and
    :class:`~fr_lightning.data.sources.folder.FolderIndex` are the two implementations.
    """

    def __len__(self) -> int: ...

    @property
    def labels(self) -> np.ndarray:
        """Every image's label (int64, position order), checked against the set's ``num_classes``."""
        ...

    def read(self, position: int) -> tuple[bytes, float]:
        """Encoded image bytes and raw label; raises :class:`DataFormatError` when unreadable."""
        ...

    def describe(self, position: int) -> str:
        """Where the image at ``position`` lives (file and key), for error messages."""
        ...


class FaceSamples(FaceSet):
    """The map-style real-image training set: encoded images -> decoded, augmented sample dicts.

    Reads ``records`` (an :class:`EncodedFaces`); its :attr:`labels` are the records' (read
    only when asked for, e.g. by F²C's dual loaders or label noise). Labels are checked against
    ``num_classes`` on every read; a bad label is an error even with ``skip_corrupt`` (it means
    the data or ``num_classes`` is wrong).

    Args:
        records: The encoded images and labels.
        num_classes: Valid labels are ``[0, num_classes)``.
        image_size: Output side in px (other sizes are resized, landmarks follow).
        augment: Augmentation applied to every sample.
        landmarks: Optional ``[N, 5, 2]`` landmarks in source-image pixels.
        groups: Optional ``[N]`` group ids.
        skip_corrupt: Skip unreadable samples (logged, counted in ``skipped``, logged as ``data/skipped``)
            instead of raising.
        skip_counter: Where skipped samples are counted (the source's, so the data module reads
            it); default: a counter of this set's own.
    """

    def __init__(
        self,
        records: EncodedFaces,
        num_classes: int,
        image_size: int,
        augment: Augment,
        landmarks: np.ndarray | None = None,
        groups: np.ndarray | None = None,
        skip_corrupt: bool = False,
        skip_counter: SkipCounter | None = None,
    ) -> None:
        self.records = records
        self.num_classes = num_classes
        self.image_size = image_size
        self.size_check = SizeCheck(image_size, "the training images")  # one warning per set, naming a file
        self.augment = augment
        self.landmarks = landmarks
        self.groups = groups
        self.skip_corrupt = skip_corrupt
        self.skip_counter = skip_counter if skip_counter is not None else SkipCounter()

    @property
    def labels(self) -> np.ndarray:  # type: ignore[override]
        """Every sample's label (int64, index order), from the records."""
        return self.records.labels

    @property
    def skipped(self) -> int:
        """Samples skipped as unreadable so far, summed over this process and its DataLoader workers."""
        return self.skip_counter.total

    def __len__(self) -> int:
        return len(self.records)

    def describe(self, index: int) -> str:
        """Where sample ``index`` lives (file and key), for error messages."""
        return self.records.describe(index)

    def read_checked(self, index: int) -> tuple[int, np.ndarray, int]:
        """``(index actually used, RGB uint8 image, label)``, skipping unreadable samples when configured."""
        n = len(self)
        for step in range(n if self.skip_corrupt else 1):
            j = (index + step) % n
            try:
                buf, raw = self.records.read(j)
                image = decode_image(buf, self.describe(j))
            except DataFormatError as exc:
                if not self.skip_corrupt:
                    raise
                self.skip_counter.add()
                log.warning("skipping unreadable sample: %s", exc)
                continue
            return j, image, check_label(raw, self.num_classes, self.describe(j))
        raise DataFormatError(f"{self.describe(index)}: no readable sample (all {n} failed)")

    def __getitems__(self, indices: list[int]) -> list[dict[str, Any]]:
        n = len(self)
        images, rows = [], []
        keys = sample_keys(indices).tolist()  # augmentation: a function of (seed, epoch, index) per sample
        for index, key in zip(indices, keys):
            index = operator.index(index)
            if not -n <= index < n:
                raise IndexError(f"index {index} out of range for {n} samples")
            j, image, label = self.read_checked(index % n)
            lm = None if self.landmarks is None else self.landmarks[j]
            image, lm = resize_face(image, lm, self.image_size, self.size_check, self.describe(j))
            aug = self.augment(image, lm, key=key)
            images.append(aug.image)
            rows.append((j, label, aug.landmarks))
        tensors = normalize_images(np.stack(images))
        out = []
        for k, (j, label, lm) in enumerate(rows):
            sample: dict[str, Any] = {"images": tensors[k], "labels": label}
            if lm is not None:
                sample["landmarks"] = np.asarray(lm, np.float32)
            if self.groups is not None:
                sample["group"] = int(self.groups[j])
            sample["index"] = j
            out.append(sample)
        return out

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.__getitems__([index])[0]
