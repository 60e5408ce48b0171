"""X2-Softmax: target logit a quadratic function of the angle."""

from __future__ import annotations

import torch
from torch import Tensor

from fr_lightning.heads.base import MarginHead, register_head


@register_head
class X2Softmax(MarginHead):
    """X2-Softmax (2023): target logit ``s * (a·(θ_y - h)² + k)``.

    With ``a < 0`` the quadratic falls below ``cos θ`` for large θ, so the effective margin
    grows with the angle. The authors' code applies it to the value only (gradient as
    NormFace): that is ``straight_through=True`` here; the default is the textbook gradient.

    Args:
        s: logit scale.
        a: quadratic coefficient (negative).
        h: vertex angle (radians).
        k: vertex value.
        straight_through: transform on the value only, NormFace gradient.
    """

    def __init__(
        self, s: float = 64.0, a: float = -0.9, h: float = 0.0, k: float = 0.65, straight_through: bool = False
    ) -> None:
        super().__init__(s=s, straight_through=straight_through)
        self.a, self.h, self.k = a, h, k

    def target_logit(self, cos_y: Tensor, norms_y: Tensor | None) -> Tensor:
        """``a·(θ_y - h)² + k``."""
        return self.a * (torch.acos(cos_y) - self.h) ** 2 + self.k
