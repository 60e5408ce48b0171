"""Combined margin: multiplicative angular, additive angular and additive cosine at once."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from fr_lightning.heads.base import MarginHead, register_head


@register_head
class CombinedMargin(MarginHead):
    """Combined margin (insightface): target logit ``s * (cos(m1·θ_y + m2) - m3)``.

    All three margins apply together (not either/or). The formula is used as written, with
    no fallback past ``m1·θ_y + m2 > π``. (1, 0.5, 0) is ArcFace without its fallback,
    (1, 0, 0.4) is CosFace, (1, 0, 0) is NormFace.

    Args:
        s: logit scale.
        m1: multiplicative angular margin.
        m2: additive angular margin (radians).
        m3: additive cosine margin.
        straight_through: margins on the value only, NormFace gradient.
    """

    def __init__(
        self, s: float = 64.0, m1: float = 1.0, m2: float = 0.5, m3: float = 0.0, straight_through: bool = False
    ) -> None:
        super().__init__(s=s, straight_through=straight_through)
        self.m1, self.m2, self.m3 = m1, m2, m3

    def target_logit(self, cos_y: Tensor, norms_y: Tensor | None) -> Tensor:
        """``cos(m1·θ_y + m2) - m3``."""
        if self.m1 == 1.0:
            # cos(θ + m2) by the addition formula: no arccos, and exact when m2 = 0.
            sin_t = torch.sqrt(1.0 - cos_y * cos_y)
            inner = cos_y * math.cos(self.m2) - sin_t * math.sin(self.m2)
        else:
            inner = torch.cos(self.m1 * torch.acos(cos_y) + self.m2)
        return inner - self.m3
