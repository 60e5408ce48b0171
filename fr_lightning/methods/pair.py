"""The pair method: a pair-based loss (FaceNet triplet or Centroid Triplet) as an auxiliary term
beside a margin head (docs/methods.md, "Pair-based objectives")."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from torch import Tensor

from fr_lightning.batch import StepContext
from fr_lightning.functional.pair_losses import Mining
from fr_lightning.heads.ctl import CentroidTriplet
from fr_lightning.heads.triplet import PairHead, Triplet
from fr_lightning.methods.base import Method, register

if TYPE_CHECKING:
    from fr_lightning.module import FaceRecognitionModule


@register
class PairLoss(Method):
    """Adds ``weight`` × a pair-based loss of the step's raw embeddings and labels to the total.

    The margin head and its classifier train as usual; the term reads only ``ctx.out.embeddings``
    and the batch's labels (every sample, whatever weights other methods give the classifier
    loss), so it composes with every method. Logged as ``train/loss/pair/<triplet|ctl>``. It
    wants batches with several images per identity: ``data.init_args.sampler=pk``.

    Args:
        loss: ``triplet`` (FaceNet, :class:`~fr_lightning.heads.Triplet`) or ``ctl``
            (:class:`~fr_lightning.heads.CentroidTriplet`).
        weight: factor on the term.
        margin: the loss's margin (None: 0.2 for triplet, 0.3 for ctl).
        mining: triplet mining, ``semihard``, ``hard`` or ``all`` (triplet only).
    """

    name = "pair"
    order = 60

    def __init__(self, loss: Literal["triplet", "ctl"] = "triplet", weight: float = 1.0, margin: float | None = None, mining: Mining = "semihard") -> None:
        if loss not in ("triplet", "ctl"):
            raise ValueError(f"method pair: loss must be 'triplet' or 'ctl', got {loss!r}")
        if weight < 0:
            raise ValueError(f"method pair: weight must be >= 0, got {weight}")
        self.loss = loss
        self.weight = float(weight)
        self.head: PairHead = (
            Triplet(margin=0.2 if margin is None else margin, mining=mining)
            if loss == "triplet"
            else CentroidTriplet(margin=0.3 if margin is None else margin)
        )

    def loss_terms(self, ctx: StepContext, module: "FaceRecognitionModule") -> dict[str, Tensor]:
        """``{"triplet" | "ctl": weight × loss}`` of the step's embeddings and labels."""
        out = ctx.output
        return {self.head.key: self.weight * self.head.pair_loss(out.embeddings, ctx.batch.labels)}
