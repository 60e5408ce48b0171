"""NormFace: scaled cosine logits without a margin."""

from __future__ import annotations

from fr_lightning.heads.base import MarginHead, register_head


@register_head
class NormFace(MarginHead):
    """NormFace (Wang et al., 2017): logit ``s * cos θ_j`` for every class, target included.

    The baseline every other head is measured against.

    Args:
        s: logit scale.
    """

    def __init__(self, s: float = 64.0) -> None:
        super().__init__(s=s)
