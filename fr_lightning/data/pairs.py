"""Verification pair sets: a named list of 2N images with N same/different flags."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from torch.utils.data import Dataset

from fr_lightning.data.transforms import normalize_images

#: Renders (or decodes) uint8 RGB images for a sorted list of image indices.
ImageFn = Callable[[np.ndarray], np.ndarray]


@dataclass
class PairSet:
    """A verification set in insightface order: pair i = images (2i, 2i+1).

    Attributes:
        name: metric prefix (``val/<name>/acc``).
        issame: ``[N]`` bool.
        load: returns uint8 RGB ``[k, H, W, 3]`` for image indices ``[k]``.
        meta: optional per-pair arrays used by extra reports (e.g. ``yaw`` of the profile side, ``group``).
    """

    name: str
    issame: np.ndarray
    load: ImageFn
    meta: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def num_images(self) -> int:
        return 2 * len(self.issame)


class PairImages(Dataset):
    """Dataset over a :class:`PairSet`'s images, yielding ``{"images", "index"}`` (batched fetch)."""

    def __init__(self, pairs: PairSet) -> None:
        self.pairs = pairs

    def __len__(self) -> int:
        return self.pairs.num_images

    def __getitems__(self, indices: list[int]) -> list[dict[str, object]]:
        idx = np.asarray(indices, dtype=np.int64)
        images = normalize_images(self.pairs.load(idx))
        return [{"images": images[k], "index": int(i)} for k, i in enumerate(idx)]

    def __getitem__(self, index: int) -> dict[str, object]:
        return self.__getitems__([index])[0]
