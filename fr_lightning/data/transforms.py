"""Image normalisation and geometric helpers shared by every data source."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

#: insightface's 5-point order: left eye, right eye, nose, left mouth, right mouth.
#: A horizontal flip swaps left and right.
FLIP_ORDER = (1, 0, 2, 4, 3)


def normalize_images(images: np.ndarray) -> Tensor:
    """uint8 RGB ``[N, H, W, 3]`` (or one ``[H, W, 3]``) -> float ``[N, 3, H, W]`` in [-1, 1]: ``(x/255 - 0.5)/0.5``."""
    arr = np.ascontiguousarray(images)
    t = torch.from_numpy(arr)
    if t.ndim == 3:
        t = t.unsqueeze(0)
    return t.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)


def hflip_landmarks(landmarks: np.ndarray, width: int) -> np.ndarray:
    """Mirror 5-point landmarks ``[..., 5, 2]`` for an image of ``width`` px (x -> W-1-x, left/right swapped)."""
    out = landmarks[..., FLIP_ORDER, :].copy()
    out[..., 0] = (width - 1) - out[..., 0]
    return out
