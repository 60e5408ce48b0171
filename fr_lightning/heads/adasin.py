"""AdaSin (reconstruction): CurricularFace modulated by the sine difficulty sin(θ_y/2)."""

from __future__ import annotations

import torch
from torch import Tensor

from fr_lightning.heads.base import register_head
from fr_lightning.heads.curricularface import CurricularFace


@register_head
class AdaSin(CurricularFace):
    """AdaSin, a RECONSTRUCTION from the paper's stated idea (full text not consulted).

    Known: difficulty ``D = sin(θ_y/2) = sqrt((1 - c_y)/2)``, modulation ``Φ = t + h·D``
    with ``t`` an EMA over training, penalty on positive and negative cosines of hard
    samples, weak early / strong late. Reconstructed on CurricularFace (D, Φ detached):
    target ``cos(θ_y + m_i)`` with ``m_i = m·(1 + h_p·D)`` (ArcFace fallback past π); a
    negative with ``c_j > cos(θ_y + m_i)`` becomes ``c_j·(Φ + c_j)``; ``t`` as in
    CurricularFace. Do not quote the paper's numbers for it.

    Switchable pieces: ``h`` (difficulty term of Φ; 0 = CurricularFace's t), ``h_p``
    (difficulty-adaptive positive margin; 0 = fixed m), ``momentum`` (speed of the t
    curriculum), ``straight_through``. ``h = h_p = 0`` reproduces CurricularFace exactly.

    Args:
        s: logit scale.
        m: base additive angular margin (radians).
        h: weight of the difficulty D in the negative modulation Φ = t + h·D.
        h_p: difficulty scaling of the positive margin, m_i = m·(1 + h_p·D).
        momentum: EMA rate of ``t`` (buffer, starts at 0, synced across ranks).
        straight_through: target margin on the value only (negatives unchanged).
    """

    def __init__(
        self,
        s: float = 64.0,
        m: float = 0.5,
        h: float = 1.0,
        h_p: float = 0.0,
        momentum: float = 0.01,
        straight_through: bool = False,
    ) -> None:
        super().__init__(s=s, m=m, momentum=momentum, straight_through=straight_through)
        self.h, self.h_p = h, h_p

    def difficulty(self, cos_y: Tensor) -> Tensor:
        """``D = sin(θ_y/2) = sqrt((1 - c_y)/2)``, detached, in [0, 1]."""
        return torch.sqrt(((1.0 - cos_y.detach()) * 0.5).clamp(min=0.0))

    def row_margin(self, cos_y: Tensor) -> Tensor:
        """``m_i = m·(1 + h_p·D)``."""
        return self.m * (1.0 + self.h_p * self.difficulty(cos_y))

    def modulation(self, cos_y: Tensor) -> Tensor:
        """``Φ = t + h·D``."""
        return self.t.to(cos_y.dtype) + self.h * self.difficulty(cos_y)
