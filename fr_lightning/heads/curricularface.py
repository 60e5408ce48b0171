"""CurricularFace: ArcFace target, hard negatives re-weighted by a running curriculum t."""

from __future__ import annotations

import torch
from torch import Tensor

from fr_lightning.heads.arcface import arc_target
from fr_lightning.heads.base import MarginHead, register_head
from fr_lightning.utils.dist import all_reduce_sum


@register_head
class CurricularFace(MarginHead):
    """CurricularFace (Huang et al., 2020).

    Target ``s * cos(θ_y + m)`` (ArcFace, same fallback). A negative with
    ``c_j > cos(θ_y + m)`` is hard and becomes ``s * c_j * (t + c_j)``. In training mode
    ``t ← momentum·mean(c_y) + (1 - momentum)·t`` runs first (as in the authors' code, the
    batch uses the updated t); the mean is over rows with a positive, summed across ranks.

    Args:
        s: logit scale.
        m: additive angular margin (radians).
        momentum: EMA rate of ``t`` (buffer, starts at 0, checkpointed).
        straight_through: target margin on the value only (negatives unchanged).
    """

    def __init__(self, s: float = 64.0, m: float = 0.5, momentum: float = 0.01, straight_through: bool = False) -> None:
        super().__init__(s=s, straight_through=straight_through)
        self.m = m
        self.momentum = momentum
        self.register_buffer("t", torch.zeros(()))

    def row_margin(self, cos_y: Tensor) -> Tensor:
        """Angular margin of each row ``[B]``."""
        return torch.full_like(cos_y, self.m)

    def modulation(self, cos_y: Tensor) -> Tensor:
        """Hard-negative modulation of each row ``[B]``: ``t``."""
        return self.t.to(cos_y.dtype).expand_as(cos_y)

    def update_state(self, cos_y: Tensor, valid: Tensor, norms: Tensor | None) -> None:
        """``t`` EMA of the global mean target cosine (kept when no row has a positive)."""
        stats = all_reduce_sum(torch.stack([torch.where(valid, cos_y, 0.0).sum(), valid.sum().to(cos_y.dtype)]))
        mean = stats[0] / stats[1].clamp(min=1.0)
        new = self.momentum * mean + (1.0 - self.momentum) * self.t
        self.t.copy_(torch.where(stats[1] > 0, new, self.t))

    def target_logit(self, cos_y: Tensor, norms_y: Tensor | None) -> Tensor:
        """``cos(θ_y + m)`` with the ArcFace fallback."""
        return arc_target(cos_y, self.row_margin(cos_y))

    def negative_logits(self, cos: Tensor, cos_y: Tensor, target: Tensor, labels: Tensor) -> Tensor:
        """Hard negatives ``c_j > cos(θ_y + m)`` become ``c_j·(modulation + c_j)``."""
        m = self.row_margin(cos_y)
        # Hardness uses the plain cos(θ_y + m), without the fallback, as the authors' code does.
        threshold = cos_y * torch.cos(m) - torch.sqrt(1.0 - cos_y * cos_y) * torch.sin(m)
        hard = (cos > threshold.unsqueeze(1)) & (labels >= 0).unsqueeze(1)
        phi = self.modulation(cos_y).unsqueeze(1)
        return torch.where(hard, cos * (phi + cos), cos)
