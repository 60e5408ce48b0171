"""Centroid Triplet Loss as a head (no classifier)."""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from fr_lightning.functional.pair_losses import batch_hard_loss, centroid_triplet_loss
from fr_lightning.heads.base import register_head
from fr_lightning.heads.triplet import PairHead

__all__ = ["CentroidTriplet"]


@register_head
class CentroidTriplet(PairHead):
    """Centroid Triplet Loss (Wieczorek et al.) as the authors' released code computes it
    (:func:`~fr_lightning.functional.pair_losses.centroid_triplet_loss`): each query against class
    centroids that leave the query out; batch-hard, plain Euclidean distance, raw features.

    The authors' full model adds a batch-hard triplet on the whole batch (``query_weight``) and
    classifier terms (cross-entropy, center loss): the latter are what a margin head beside it
    provides (the ``pair`` method with this head).

    Args:
        margin: the released configs' ``SOLVER.MARGIN`` (0.3).
        query_weight: weight of the batch-hard query triplet term on the whole batch (0: off).
    """

    key: ClassVar[str] = "ctl"

    def __init__(self, margin: float = 0.3, query_weight: float = 0.0) -> None:
        super().__init__()
        self.margin = margin
        self.query_weight = query_weight

    def pair_loss(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """CTL of the batch (plus ``query_weight`` × the batch-hard query term)."""
        loss = centroid_triplet_loss(embeddings, labels, margin=self.margin)
        if self.query_weight:
            loss = loss + self.query_weight * batch_hard_loss(embeddings.to(loss.dtype), labels, self.margin)
        return loss
