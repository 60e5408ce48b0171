"""ArcFace: additive angular margin, with insightface's fallback past θ + m > π."""

from __future__ import annotations

import torch
from torch import Tensor

from fr_lightning.heads.base import MarginHead, register_head


def arc_target(cos_y: Tensor, m: float | Tensor) -> Tensor:
    """``cos(θ + m)``, or ``cos θ - m·sin m`` where ``θ + m > π``.

    The fallback keeps the target decreasing in θ where ``cos(θ + m)`` would turn back up.
    ``m`` is a scalar or a per-row tensor (MagFace, AdaSin). Written without ``arccos``.
    """
    m = torch.as_tensor(m, dtype=cos_y.dtype, device=cos_y.device)
    cos_m, sin_m = torch.cos(m), torch.sin(m)
    sin_t = torch.sqrt(1.0 - cos_y * cos_y)
    # θ + m > π  <=>  cos θ < cos(π - m) = -cos m   (only possible for m > 0)
    inside = (cos_y > -cos_m) | (m <= 0)
    return torch.where(inside, cos_y * cos_m - sin_t * sin_m, cos_y - m * sin_m)


@register_head
class ArcFace(MarginHead):
    """ArcFace (Deng et al., 2019): target logit ``s * cos(θ_y + m)``.

    Where ``θ_y + m > π`` the target is ``s * (cos θ_y - m·sin m)`` (insightface's rule).

    Args:
        s: logit scale.
        m: additive angular margin (radians).
        straight_through: margin on the value only, NormFace gradient.
    """

    def __init__(self, s: float = 64.0, m: float = 0.5, straight_through: bool = False) -> None:
        super().__init__(s=s, straight_through=straight_through)
        self.m = m

    def target_logit(self, cos_y: Tensor, norms_y: Tensor | None) -> Tensor:
        """``cos(θ_y + m)`` with the fallback."""
        return arc_target(cos_y, self.m)
