"""FaceNet's triplet loss as a head (no classifier), and the base of the pair-based heads."""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from fr_lightning.functional.pair_losses import Mining, triplet_loss
from fr_lightning.heads.base import MarginHead, register_head

__all__ = ["PairHead", "Triplet"]


class PairHead(MarginHead):
    """Base of the pair-based heads: the loss comes from the batch's embeddings and labels alone.

    The module trains such a head with no classifier at all
    (:class:`~fr_lightning.classifiers.none.NoClassifier`); the criterion calls :meth:`pair_loss`
    instead of scoring class centres. There are no logits, so methods that read logits or weight
    per-sample classifier losses are refused at setup. Train with identity-balanced batches
    (``data.init_args.sampler=pk``). Beside a margin head, the same loss is the ``pair`` method's
    auxiliary term (:class:`~fr_lightning.methods.pair.PairLoss`).
    """

    softmax: ClassVar[bool] = False
    #: Read by the module and criterion: no classifier, :meth:`pair_loss` is the supervised loss.
    pair_based: ClassVar[bool] = True
    #: Short name of the loss (log key ``train/loss/<method>/<key>`` when used as an auxiliary term).
    key: ClassVar[str] = "pair"

    def __init__(self) -> None:
        super().__init__(s=1.0)

    def pair_loss(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """The scalar loss of raw embeddings ``[B, D]`` with identity labels ``[B]`` (each pair head defines it)."""
        raise TypeError(f"{type(self).__name__} is the base of the pair-based heads; use fr_lightning.heads.Triplet or CentroidTriplet")

    def forward(self, cosine: Tensor, labels: Tensor, norms: Tensor | None = None, embeddings: Tensor | None = None) -> Tensor:
        raise TypeError(f"{type(self).__name__} is a pair-based head: it has no logits (it trains with no classifier; see pair_loss)")

    def loss(self, cosine: Tensor, labels: Tensor, norms: Tensor | None = None, embeddings: Tensor | None = None) -> Tensor:
        raise TypeError(f"{type(self).__name__} is a pair-based head: its loss is pair_loss(embeddings, labels), not a per-class one")


@register_head
class Triplet(PairHead):
    """FaceNet (Schroff et al., 2015): ``max(d(a,p) − d(a,n) + margin, 0)`` on squared distances of
    L2-normalised embeddings, with online mining (:func:`~fr_lightning.functional.pair_losses.triplet_loss`).

    Args:
        margin: ``α`` (FaceNet: 0.2).
        mining: ``semihard`` (FaceNet's rule), ``hard`` (batch-hard) or ``all`` (batch-all).
    """

    key: ClassVar[str] = "triplet"

    def __init__(self, margin: float = 0.2, mining: Mining = "semihard") -> None:
        super().__init__()
        if mining not in ("semihard", "hard", "all"):
            raise ValueError(f"model.init_args.head: Triplet mining must be 'semihard', 'hard' or 'all', got {mining!r}")
        self.margin = margin
        self.mining = mining

    def pair_loss(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """FaceNet's triplet loss of the batch."""
        return triplet_loss(embeddings, labels, margin=self.margin, mining=self.mining)
