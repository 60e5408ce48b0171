"""The multi-resolution degradation as an albumentations transform, for data-side pipelines.

The training callback (:class:`fr_lightning.methods.LowRes`) degrades batches on the
device; this transform does the same thing to one image in a data-loading worker, e.g. to add
low-resolution samples to a plain training set or to build low-resolution probes:

    import albumentations as A
    from fr_lightning.data.lowres_transform import RandomLowResolution
    pipeline = A.Compose([RandomLowResolution(sizes=(7, 14, 20), probs=(0.5, 0.3, 0.2), p=0.5)], seed=0)
    out = pipeline(image=rgb_uint8)["image"]

Both paths use the same bicubic, anti-aliased down-then-up resampling
(:func:`fr_lightning.functional.lowres.degrade_to`), so they agree to the uint8 rounding.
This module is the only place of the low-resolution code that imports albumentations.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A  # noqa: E402

from fr_lightning.functional.lowres import degrade_to, degrade_uint8, scale_sizes  # noqa: E402

__all__ = ["RandomLowResolution"]


class RandomLowResolution(A.ImageOnlyTransform):
    """Degrade an image to a resolution tier drawn from ``sizes`` with probabilities ``probs``.

    Args:
        sizes: resolution tiers in px at the ``sizes_relative_to`` reference (0 = leave as is).
        probs: probability of each tier (normalised here).
        sizes_relative_to: reference size the tiers are given at; a tier ``r`` becomes
            ``round(r · H / sizes_relative_to)`` px on an ``H``-px image. 0 = tiers are px.
        p: probability of applying the transform at all.
    """

    def __init__(
        self,
        sizes: Sequence[int] = (7, 14, 20),
        probs: Sequence[float] = (0.5, 0.3, 0.2),
        sizes_relative_to: int = 112,
        p: float = 1.0,
    ) -> None:
        super().__init__(p=p)
        if len(sizes) != len(probs) or not sizes:
            raise ValueError(f"sizes {list(sizes)} and probs {list(probs)} must be non-empty and of equal length")
        weights = np.asarray(probs, dtype=np.float64)
        if (weights < 0).any() or weights.sum() <= 0:
            raise ValueError(f"probs must be non-negative with a positive sum, got {list(probs)}")
        self.sizes = tuple(int(s) for s in sizes)
        self.probs = tuple(float(q) for q in probs)
        self.sizes_relative_to = int(sizes_relative_to)
        self._weights = (weights / weights.sum()).tolist()

    def get_params(self) -> dict[str, Any]:
        """Draw the tier (through albumentations' seeded generator, so ``Compose(seed=...)`` fixes it)."""
        return {"tier": self.py_random.choices(range(len(self.sizes)), weights=self._weights)[0]}

    def apply(self, img: np.ndarray, tier: int = 0, **params: Any) -> np.ndarray:
        """Degrade one ``[H, W, C]`` image (uint8, or float32 in [0, 1]) to the drawn tier."""
        size = scale_sizes([self.sizes[tier]], img.shape[0], self.sizes_relative_to)[0]
        if size == 0 or size >= max(img.shape[:2]):
            return img
        squeeze = img.ndim == 2
        arr = img[..., None] if squeeze else img
        if arr.dtype == np.uint8:
            out = degrade_uint8(arr[None], size)[0]
        else:
            t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)).permute(2, 0, 1)[None]
            out = degrade_to(t, size)[0].permute(1, 2, 0).clamp_(0.0, 1.0).numpy().astype(arr.dtype)
        return out[..., 0] if squeeze else out

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("sizes", "probs", "sizes_relative_to")
