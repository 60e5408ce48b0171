"""SphereFace: multiplicative angular margin with the monotonic ψ extension."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from fr_lightning.heads.base import MarginHead, register_head


@register_head
class SphereFace(MarginHead):
    """SphereFace (Liu et al., 2017) on normalised features: target logit ``s * ψ(θ_y)``.

    ``ψ(θ) = (-1)^k cos(m1·θ) - 2k`` with ``k = ⌊m1·θ / π⌋`` equals ``cos(m1·θ)`` while
    ``m1·θ ≤ π`` and keeps decreasing beyond, so the target never rises again with θ.
    ``m1 = 1.35`` is the SphereFace-R style setting; the original paper used 4.

    Args:
        s: logit scale.
        m1: multiplicative angular margin.
        straight_through: margin on the value only, NormFace gradient.
    """

    def __init__(self, s: float = 64.0, m1: float = 1.35, straight_through: bool = False) -> None:
        super().__init__(s=s, straight_through=straight_through)
        self.m1 = m1

    def target_logit(self, cos_y: Tensor, norms_y: Tensor | None) -> Tensor:
        """``ψ(θ_y)``."""
        m_theta = self.m1 * torch.acos(cos_y)
        k = torch.floor(m_theta.detach() / math.pi)
        sign = 1.0 - 2.0 * torch.remainder(k, 2.0)
        return sign * torch.cos(m_theta) - 2.0 * k
