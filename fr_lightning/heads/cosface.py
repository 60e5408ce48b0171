"""CosFace / AM-Softmax: additive cosine margin."""

from __future__ import annotations

from torch import Tensor

from fr_lightning.heads.base import MarginHead, register_head


@register_head
class CosFace(MarginHead):
    """CosFace (Wang et al., 2018): target logit ``s * (cos θ_y - m)``.

    Args:
        s: logit scale.
        m: cosine margin subtracted from the target cosine.
        straight_through: margin on the value only, NormFace gradient.
    """

    def __init__(self, s: float = 64.0, m: float = 0.4, straight_through: bool = False) -> None:
        super().__init__(s=s, straight_through=straight_through)
        self.m = m

    def target_logit(self, cos_y: Tensor, norms_y: Tensor | None) -> Tensor:
        """``cos θ_y - m``."""
        return cos_y - self.m
