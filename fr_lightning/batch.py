"""The batch that flows from the data module through methods into the loss."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor


@dataclass
class FaceBatch:
    """A training batch with the optional side information some methods need.

    Attributes:
        images: float images ``[B, 3, H, W]``, normalised ``(x/255 - 0.5)/0.5``.
        labels: identity labels ``[B]`` (int64), possibly noisy.
        landmarks: 5-point landmarks ``[B, 5, 2]`` in pixels of ``images`` (PoseFace).
        pose: ``[B, 3]`` yaw, pitch, roll in degrees (diagnostics / evaluation only).
        group: demographic group ``[B]`` (GABN, fairness evaluation).
        hr_images: the high-resolution view when a method builds a low-resolution one.
        clean_labels: true labels when noise was injected (diagnostics only, never a loss).
        index: dataset index of each sample ``[B]``.
    """

    images: Tensor
    labels: Tensor
    landmarks: Tensor | None = None
    pose: Tensor | None = None
    group: Tensor | None = None
    hr_images: Tensor | None = None
    clean_labels: Tensor | None = None
    index: Tensor | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def replace(self, **changes: Any) -> "FaceBatch":
        """Return a copy with some fields replaced (methods never edit a batch in place)."""
        return replace(self, **changes)

    def to(self, device: torch.device | str) -> "FaceBatch":
        """Move every tensor field to ``device``."""
        moved = {
            f.name: (v.to(device) if isinstance(v := getattr(self, f.name), Tensor) else v) for f in fields(self)
        }
        return FaceBatch(**moved)

    def require(self, name: str, who: str) -> Tensor:
        """Return field ``name`` or raise a clear error saying which method needs it."""
        value = getattr(self, name)
        if value is None:
            raise ValueError(
                f"{who} needs `{name}` in the training batch, but the data source provides none. "
                f"Use a data source that carries {name} (the synthetic source does, real data needs a side file)."
            )
        return value


def collate_faces(samples: list[dict[str, Any]]) -> FaceBatch:
    """Collate dict samples (tensor or number values) into a :class:`FaceBatch`."""
    keys = samples[0].keys()
    out: dict[str, Tensor] = {}
    for key in keys:
        values = [s[key] for s in samples]
        if isinstance(values[0], Tensor):
            out[key] = torch.stack(values)
        elif isinstance(values[0], np.ndarray):
            out[key] = torch.from_numpy(np.stack(values))
        else:
            out[key] = torch.as_tensor(values)
    return FaceBatch(**out)
