"""The one forward path from embeddings to per-sample loss: classifier + margin head -> StepOutput.

The module, the co-teaching peer and GABN's erased re-forward all go through :class:`Criterion`,
in one of two modes:

* **training** (:func:`training_pass`): the head applies its margins (plus any per-sample target
  margin from the stacked methods), BatchNorm layers and stateful heads update their running
  statistics, and the autograd graph is recorded;
* **scoring** (:func:`scoring_pass`): no margin (logits are the margin-free ``s·cos``, the loss
  is their softmax cross-entropy), BatchNorm normalises with the batch's own statistics but
  updates no running statistic, no head state changes, and no graph is recorded. Used where a
  method ranks or selects samples (co-teaching's small-loss selection).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from fr_lightning.batch import StepOutput
from fr_lightning.heads.base import MarginHead, compute_dtype

if TYPE_CHECKING:
    from fr_lightning.classifiers.base import Classifier


class Criterion:
    """A classifier and a margin head, used as one function ``embeddings -> StepOutput``.

    Not an ``nn.Module``: it holds references to modules registered elsewhere (the module's
    ``classifier`` and ``head``, or a co-teaching peer's classifier and the shared head), so
    state-dict keys do not change.

    Args:
        classifier: the class centres (FullFC, PartialFC).
        head: the margin head turning cosines into logits.
    """

    def __init__(self, classifier: "Classifier", head: "MarginHead") -> None:
        self.classifier = classifier
        self.head = head

    @property
    def scale(self) -> float:
        """The head's logit scale ``s`` (what margin-free logits are multiplied by)."""
        return float(self.head.s)

    @property
    def full_logits(self) -> bool:
        """True when every pass scores every class (no sampled or rank-sharded centres)."""
        sampled = self.classifier.sample_rate < 1.0
        return not sampled and self.local_logits

    @property
    def local_logits(self) -> bool:
        """True when each sample's logits live on its own rank (centres not sharded across ranks)."""
        return not self.classifier.sharded

    def __call__(
        self,
        embeddings: Tensor,
        labels: Tensor,
        *,
        training: bool = True,
        target_margin: Tensor | None = None,
        class_index: Tensor | None = None,
        features: Tensor | None = None,
    ) -> StepOutput:
        """Cosines, logits and per-sample loss of ``embeddings`` (training or scoring mode).

        Args:
            embeddings: raw backbone output ``[B, D]``.
            labels: identity labels ``[B]``.
            training: margins and head-state updates on (True) or the margin-free scoring logits (False).
            target_margin: ``[B]`` extra additive margin on each target cosine (training mode only);
                ``StepOutput.cosine`` stays unshifted.
            class_index: the classes a sampled classifier must score (another pass's ``class_index``).
            features: passed through to ``StepOutput.features``.
        """
        if getattr(self.head, "pair_based", False):
            # A pair-based head (no classifier): one batch-level loss, given to every sample so
            # the reducer's mean is that loss; no cosine is scored (``[B, 0]``).
            loss = self.head.pair_loss(embeddings, labels)  # type: ignore[attr-defined]
            empty = embeddings.new_zeros((embeddings.shape[0], 0), dtype=torch.float32)
            return StepOutput(embeddings, empty, labels, empty, loss.expand(embeddings.shape[0]), features, None)
        if class_index is None:
            scores = self.classifier(embeddings, labels)
        else:
            scores = self.classifier(embeddings, labels, index=class_index)  # a sampled classifier
        cosine, target = scores
        index = self.classifier.last_index
        if not training:
            logits = self.scale * self.head.prepare(cosine)
            per_sample = self.classifier.cross_entropy(logits, target)
            return StepOutput(embeddings, cosine, target, logits, per_sample, features, index)
        # The head sees the rows the classifier scored: this batch, or every rank's under PartialFC.
        norms = scores.rows.float().norm(dim=1)
        unit = F.normalize(scores.rows.float(), dim=1)
        head_cosine = cosine
        if target_margin is not None:
            head_cosine = self._shift_target(cosine, target, target_margin)
        logits = self.head(head_cosine, target, norms=norms, embeddings=unit)
        if self.head.softmax:
            per_sample = self.classifier.cross_entropy(logits, target)
        else:  # SFace: the head's own per-sample loss
            per_sample = self.head.loss(head_cosine, target, norms=norms, embeddings=unit)
        return StepOutput(embeddings, cosine, target, logits, per_sample, features, index)

    def _shift_target(self, cosine: Tensor, target: Tensor, margin: Tensor) -> Tensor:
        """``cosine`` minus ``margin`` on each row's target column, out of place, in float32 (float64 kept)."""
        dtype = compute_dtype(cosine.dtype)
        if margin.shape[0] != cosine.shape[0]:
            margin = self.classifier.rows(margin.detach())  # as the scored rows: every rank's, or repeated
        # Rows with label -1 (no positive in this shard) get no shift.
        has_target = (target >= 0).to(dtype).unsqueeze(1)
        onehot = torch.zeros_like(cosine, dtype=dtype).scatter(1, target.clamp_min(0).unsqueeze(1), 1.0)
        return cosine.to(dtype) - onehot * has_target * margin.to(dtype).unsqueeze(1)


@contextmanager
def frozen_statistics(*nets: nn.Module) -> Iterator[None]:
    """Inside: BatchNorm layers in training mode normalise with batch statistics but update none.

    ``track_running_stats = False`` makes ``F.batch_norm`` use the batch's statistics without
    touching ``running_mean`` / ``running_var`` / ``num_batches_tracked``; it is restored on exit.
    """
    changed: list[_BatchNorm] = []
    for net in nets:
        for m in net.modules():
            if isinstance(m, _BatchNorm) and m.training and m.track_running_stats:
                m.track_running_stats = False
                changed.append(m)
    try:
        yield
    finally:
        for m in changed:
            m.track_running_stats = True


def training_pass(
    backbone: nn.Module,
    criterion: Criterion,
    images: Tensor,
    labels: Tensor,
    target_margin: Tensor | None = None,
    class_index: Tensor | None = None,
) -> StepOutput:
    """Training-mode forward of ``images`` through ``backbone`` and ``criterion`` (graph recorded)."""
    return criterion(backbone(images), labels, training=True, target_margin=target_margin, class_index=class_index)


@torch.no_grad()
def scoring_pass(
    backbone: nn.Module, criterion: Criterion, images: Tensor, labels: Tensor, class_index: Tensor | None = None
) -> StepOutput:
    """Scoring-mode forward: margin-free logits, no BatchNorm or head state change, no graph."""
    with frozen_statistics(backbone, criterion.classifier):
        return criterion(backbone(images), labels, training=False, class_index=class_index)
