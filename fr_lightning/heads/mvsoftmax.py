"""MV-Softmax: margin on the target plus extra weight on mis-classified negatives."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from fr_lightning.heads.arcface import arc_target
from fr_lightning.heads.base import MarginHead, register_head


@register_head
class MVSoftmax(MarginHead):
    """MV-Softmax (Wang et al., 2020): mis-classified vector guided softmax.

    Target ``f = c_y - m`` (``am``) or ``cos(θ_y + m)`` (``arc``, ArcFace fallback).
    Negatives with ``c_j > f`` become ``(t + 1)·c_j + t`` (adaptive) or ``c_j + t``
    (fixed). With ``t = 0`` this is CosFace / ArcFace.

    Args:
        s: logit scale.
        m: margin (cosine for ``am``, angular for ``arc``).
        t: extra weight of mis-classified negatives.
        margin_type: ``am`` (CosFace-style) or ``arc`` (ArcFace-style) target.
        adaptive: ``(t+1)·c_j + t`` when True, ``c_j + t`` when False.
        straight_through: target margin on the value only (negatives unchanged).
    """

    def __init__(
        self,
        s: float = 32.0,
        m: float = 0.35,
        t: float = 0.2,
        margin_type: Literal["am", "arc"] = "am",
        adaptive: bool = True,
        straight_through: bool = False,
    ) -> None:
        super().__init__(s=s, straight_through=straight_through)
        if margin_type not in ("am", "arc"):
            raise ValueError(f"margin_type must be 'am' or 'arc', got {margin_type!r}")
        self.m, self.t, self.margin_type, self.adaptive = m, t, margin_type, adaptive

    def target_logit(self, cos_y: Tensor, norms_y: Tensor | None) -> Tensor:
        """``c_y - m`` or ``cos(θ_y + m)``."""
        return cos_y - self.m if self.margin_type == "am" else arc_target(cos_y, self.m)

    def negative_logits(self, cos: Tensor, cos_y: Tensor, target: Tensor, labels: Tensor) -> Tensor:
        """Mis-classified negatives ``c_j > f`` get the extra weight ``t``."""
        hard = (cos > target.detach().unsqueeze(1)) & (labels >= 0).unsqueeze(1)
        moved = (self.t + 1.0) * cos + self.t if self.adaptive else cos + self.t
        return torch.where(hard, moved, cos)
