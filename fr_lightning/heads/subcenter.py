"""Sub-center ArcFace: K centres per class, max-pooled, then ArcFace."""

from __future__ import annotations

from torch import Tensor

from fr_lightning.heads.base import register_head
from fr_lightning.heads.arcface import ArcFace


@register_head
class SubCenterArcFace(ArcFace):
    """Sub-center ArcFace (Deng et al., 2020): ``c_j = max_k Ŵ_{j,k}·x̂``, then ArcFace.

    Expects cosine ``[B, C·K]`` where class j's sub-centres are the K adjacent columns
    ``j·K .. j·K + K - 1`` (the classifier reads ``subcenters`` and builds C·K centres in
    that order); returns logits ``[B, C]``.

    Args:
        s: logit scale.
        m: additive angular margin (radians).
        k: sub-centres per class.
        straight_through: margin on the value only, gradient as for the pooled cosine.
    """

    def __init__(self, s: float = 64.0, m: float = 0.5, k: int = 3, straight_through: bool = False) -> None:
        super().__init__(s=s, m=m, straight_through=straight_through)
        self.k = k
        self.subcenters = k

    def prepare(self, cosine: Tensor) -> Tensor:
        """Max over each class's K sub-centre columns, then the usual cast and clamp."""
        b, ck = cosine.shape
        if ck % self.k:
            raise ValueError(f"SubCenterArcFace(k={self.k}) got {ck} columns, not a multiple of k")
        return super().prepare(cosine.reshape(b, ck // self.k, self.k).amax(dim=2))
