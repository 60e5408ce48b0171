"""SFace: sigmoid-constrained hypersphere loss (not a softmax)."""

from __future__ import annotations

import torch
from torch import Tensor

from fr_lightning.heads.base import MarginHead, register_head


@register_head
class SFace(MarginHead):
    """SFace (Zhong et al., 2021): per-sample ``L = -w_y·s·c_y + Σ_{j≠y} w_j·s·c_j``.

    ``w_y = σ(k(θ_y - a))`` and ``w_j = σ(-k(θ_j - b))`` are detached, so they only set how
    hard each cosine is pulled or pushed. ``forward`` returns ``s * cos`` (for accuracy);
    the training loss comes from :meth:`loss`. A row with label -1 keeps only the inter-class
    sum over all its columns.

    Args:
        s: scale.
        k: slope of both sigmoids.
        a: intra-class angle where ``w_y`` is 1/2 (radians).
        b: inter-class angle where ``w_j`` is 1/2 (radians).
    """

    softmax = False

    def __init__(self, s: float = 64.0, k: float = 80.0, a: float = 0.8, b: float = 1.23) -> None:
        super().__init__(s=s)
        self.k, self.a, self.b = k, a, b

    def loss(
        self, cosine: Tensor, labels: Tensor, norms: Tensor | None = None, embeddings: Tensor | None = None
    ) -> Tensor:
        """Per-sample SFace loss ``[B]``."""
        cos = self.prepare(cosine)
        valid = labels >= 0
        index = labels.clamp(min=0).unsqueeze(1)
        with torch.no_grad():
            theta = torch.acos(cos)
            w_neg = torch.sigmoid(-self.k * (theta - self.b))
            # Drop the target column from the inter-class sum (rows with a positive only).
            w_neg = w_neg.scatter(1, index, torch.where(valid.unsqueeze(1), 0.0, w_neg.gather(1, index)))
            w_pos = torch.sigmoid(self.k * (theta.gather(1, index).squeeze(1) - self.a)) * valid
        cos_y = cos.gather(1, index).squeeze(1)
        return self.s * ((w_neg * cos).sum(dim=1) - w_pos * cos_y)
