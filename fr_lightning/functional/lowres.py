"""Low-resolution degradation (bicubic, anti-aliased down to r px, then back up)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


def degrade_to(images: Tensor, size: int) -> Tensor:
    """Down-scale ``[B, C, H, W]`` images to ``size`` px (anti-aliased bicubic) and back to ``H x W``.

    The output keeps the input's dtype and value range; ``size >= H`` returns a copy.
    """
    h, w = images.shape[-2:]
    if size >= max(h, w):
        return images.clone()
    x = images.float()
    small = F.interpolate(x, size=(size, size), mode="bicubic", antialias=True, align_corners=False)
    up = F.interpolate(small, size=(h, w), mode="bicubic", align_corners=False)
    return up.to(images.dtype)


def degrade(
    images: Tensor,
    sizes: Sequence[int],
    probs: Sequence[float],
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Degrade each image to a resolution tier drawn per sample.

    Args:
        images: float ``[B, C, H, W]``.
        sizes: resolution tiers in px (e.g. ``(7, 14, 20)``).
        probs: probability of each tier (normalised here).
        generator: torch generator for reproducible draws.

    Returns:
        ``(degraded images, drawn size per sample [B])``.
    """
    if len(sizes) != len(probs) or not sizes:
        raise ValueError(f"sizes {list(sizes)} and probs {list(probs)} must be non-empty and of equal length")
    p = torch.as_tensor(probs, dtype=torch.float64)
    if (p < 0).any() or p.sum() <= 0:
        raise ValueError(f"probs must be non-negative with a positive sum, got {list(probs)}")
    draw = torch.multinomial(p / p.sum(), images.shape[0], replacement=True, generator=generator)
    chosen = torch.as_tensor(sizes, dtype=torch.long)[draw]
    out = images.clone()
    for tier in chosen.unique().tolist():
        sel = (chosen == tier).nonzero(as_tuple=True)[0].to(images.device)
        out[sel] = degrade_to(images[sel], int(tier))
    return out, chosen


def degrade_uint8(images: np.ndarray, size: int) -> np.ndarray:
    """:func:`degrade_to` for uint8 RGB ``[N, H, W, 3]`` arrays (verification sets)."""
    t = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()
    out = degrade_to(t, size).round_().clamp_(0, 255).to(torch.uint8)
    return out.permute(0, 2, 3, 1).contiguous().numpy()
