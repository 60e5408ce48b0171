"""Noisy-label co-teaching with a mean-point ensemble and flip-based small-loss selection (docs/methods.md)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import lightning.pytorch as pl
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from fr_lightning.batch import StepContext, StepOutput
from fr_lightning.criterion import Criterion, scoring_pass, training_pass
from fr_lightning.functional.coteaching import (
    forget_rate,
    mean_point_agreement,
    selection_quality,
    selection_score,
    small_loss_mask,
)
from fr_lightning.functional.reduce import reduce_loss
from fr_lightning.methods.base import Method, register

if TYPE_CHECKING:
    from fr_lightning.module import FaceRecognitionModule


def _fresh_copy(net: nn.Module) -> nn.Module:
    """A deep copy of ``net`` with newly initialised parameters (the peer must not start as a clone)."""
    peer = copy.deepcopy(net)
    for sub in peer.modules():
        if sub is not peer and hasattr(sub, "reset_parameters"):
            sub.reset_parameters()  # type: ignore[operator]
    init = getattr(peer, "_init_weights", None)
    if callable(init):
        init()
    weight = getattr(peer, "weight", None)
    if isinstance(weight, nn.Parameter) and weight.ndim == 2 and not hasattr(peer, "reset_parameters"):
        nn.init.normal_(weight, std=0.01)  # classifier centres (FullFC's own initialisation)
    return peer


class MeanEmbedding(nn.Module):
    """Inference network averaging the embeddings of the two co-teaching peers.

    Args:
        backbone: the module's backbone.
        peer: the peer's backbone.
    """

    def __init__(self, backbone: nn.Module, peer: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.peer = peer
        self.embedding_dim = int(getattr(backbone, "embedding_dim"))

    def forward(self, images: Tensor) -> Tensor:
        """Mean of the two raw embeddings ``[B, D]``."""
        return 0.5 * (self.backbone(images) + self.peer(images))


@register
class CoTeaching(Method):
    """Two peers pick each other's clean samples: small-loss selection on flipped images + mean-point agreement.

    The module's backbone + classifier is peer 1; :meth:`build` registers peer 2 (a freshly
    initialised copy of both) in ``module.method_modules["coteaching"]``, so it joins the
    optimizer and checkpoints. Both peers share the module's margin head and go through the same
    forward path (:class:`~fr_lightning.criterion.Criterion`). Each step:

    1. *Selection.* Both peers score the horizontally flipped batch in scoring mode (margin-free
       logits, no BatchNorm or head-state update, no graph):
       ``ℓ = (1−λ)(CE₁ + CE₂) + λ(KL(p₂‖p₁) + KL(p₁‖p₂))``, and the ``⌊(1 − R)·B⌋`` smallest are
       kept (``batch`` mode). When the batch holds several views of each sample
       (``batch.views``, e.g. with ``lowres``), a sample's score is the mean over its views and
       all its views are kept or dropped together. In ``epoch`` mode one scoring pass over the
       training loader at each epoch start ranks the whole set and the step looks its samples up
       by ``batch.index``.
    2. *Loss.* Peer 1's per-sample loss is masked through :meth:`sample_weights` (the module's
       one reducer); peer 2 runs the same training-mode pass (with the stacked methods' target
       margins) and its per-sample loss is reduced with the same combined weights of all
       stacked methods (``ctx.weights``) by :func:`~fr_lightning.functional.reduce.reduce_loss`
       (``train/loss/coteaching/peer_ce``). The agreement ``MSE(z₁, z̄) + MSE(z₂, z̄)`` on the two
       peers' logits covers every sample (``train/loss/coteaching/agreement``). An empty
       selection gives an exact zero supervised loss (the reducer's guard).

    ``R`` ramps linearly from 0 to ``forget_rate`` over ``ramp`` epochs or steps. Logged:
    ``train/coteaching/forget_rate``, ``train/coteaching/selected`` (fraction kept) and, when the
    batch carries ``clean_labels`` (label noise injected by the data module),
    ``train/coteaching/precision`` and ``train/coteaching/recall`` of the selected set.

    The evaluation embedding (validation, test, predict, export) is the module's own backbone
    (``eval_embedding: own``) or the mean of both peers' embeddings (``eval_embedding: mean``,
    a :class:`MeanEmbedding`). With ``export_mean`` the fit also writes
    ``<default_root_dir>/coteaching_mean_embedding.pt``: the state_dict of a
    :class:`MeanEmbedding` (``backbone.*`` and ``peer.*``); :meth:`mean_embedding` builds the
    same network from a trained module.

    With a sampled ``PartialFC`` the peers share the classes peer 1 sampled in each forward pass
    (``StepOutput.class_index``), so their logits cover the same columns.

    Args:
        forget_rate: τ, the final fraction of each batch (or of the set) dropped; about the
            noise rate (τ/2 for pair-flip noise).
        ramp: T_k, length of the linear ramp of the forget rate from 0 to τ.
        ramp_unit: unit of ``ramp``: ``epoch`` or ``step`` (for short runs).
        lam: λ, weight of the peers' disagreement (symmetric KL) in the selection score.
        agreement_weight: weight of the mean-point agreement term (0 = off).
        mode: ``batch`` (rank within each batch; scales to any data size) or ``epoch`` (rank the
            whole training set once per epoch; needs ``index`` in the batch).
        freeze_after: ``epoch`` mode only: stop re-scoring after this epoch and keep the last
            selection (None = re-score every epoch).
        export_mean: also save the mean-of-peers embedding network at the end of the fit.
        eval_embedding: the evaluation embedding: ``own`` (peer 1, the module's backbone) or
            ``mean`` (the mean of both peers' raw embeddings).
    """

    name = "coteaching"
    order = 30

    def __init__(
        self,
        forget_rate: float = 0.4,
        ramp: int = 10,
        ramp_unit: Literal["epoch", "step"] = "epoch",
        lam: float = 0.65,
        agreement_weight: float = 1.0,
        mode: Literal["batch", "epoch"] = "batch",
        freeze_after: int | None = None,
        export_mean: bool = False,
        eval_embedding: Literal["own", "mean"] = "own",
    ) -> None:
        super().__init__()
        if not 0.0 <= forget_rate <= 1.0:
            raise ValueError(f"CoTeaching: forget_rate must be in [0, 1], got {forget_rate}")
        if ramp < 0 or agreement_weight < 0 or not 0.0 <= lam <= 1.0:
            raise ValueError("CoTeaching: ramp and agreement_weight must be >= 0 and lam in [0, 1]")
        if ramp_unit not in ("epoch", "step"):
            raise ValueError(f"CoTeaching: ramp_unit must be 'epoch' or 'step', got {ramp_unit!r}")
        if mode not in ("batch", "epoch"):
            raise ValueError(f"CoTeaching: mode must be 'batch' or 'epoch', got {mode!r}")
        if eval_embedding not in ("own", "mean"):
            raise ValueError(f"CoTeaching: eval_embedding must be 'own' or 'mean', got {eval_embedding!r}")
        self.forget_rate = float(forget_rate)
        self.ramp = int(ramp)
        self.ramp_unit = ramp_unit
        self.lam = float(lam)
        self.agreement_weight = float(agreement_weight)
        self.mode = mode
        self.freeze_after = freeze_after
        self.export_mean = export_mean
        self.eval_embedding = eval_embedding
        #: ``epoch`` mode: selection over the whole training set, indexed by dataset index.
        self.keep: Tensor | None = None
        self.scored_epoch = -1

    def needs(self) -> frozenset[str]:
        """A second network (the peer); the dataset index in ``epoch`` mode."""
        return frozenset({"second_network", "index"} if self.mode == "epoch" else {"second_network"})

    # ------------------------------------------------------------------ build
    def build(self, module: "FaceRecognitionModule") -> nn.Module:
        """Peer 2: a freshly initialised copy of the module's backbone and classifier."""
        return nn.ModuleDict({"backbone": _fresh_copy(module.backbone), "classifier": _fresh_copy(module.classifier)})

    # --------------------------------------------------------------- helpers
    def current_rate(self, trainer: pl.Trainer) -> float:
        """R at the trainer's current epoch or step."""
        t = trainer.current_epoch if self.ramp_unit == "epoch" else trainer.global_step
        return forget_rate(t, self.forget_rate, self.ramp)

    def peer_criterion(self, module: "FaceRecognitionModule") -> Criterion:
        """Peer 2's classifier with the module's (shared) margin head."""
        return Criterion(self.parts(module)["classifier"], module.head)

    def peer_forward(
        self,
        module: "FaceRecognitionModule",
        images: Tensor,
        labels: Tensor,
        target_margin: Tensor | None = None,
        class_index: Tensor | None = None,
    ) -> StepOutput:
        """Peer 2's training-mode pass: the module's forward path with the peer's backbone and classifier.

        ``class_index``: peer 1's sampled classes (a sampled PartialFC), reused so both peers'
        logits cover the same columns.
        """
        peer = self.parts(module)
        return training_pass(peer["backbone"], self.peer_criterion(module), images, labels, target_margin, class_index)

    def score(self, module: "FaceRecognitionModule", images: Tensor, labels: Tensor) -> Tensor:
        """Selection scores ``[B]`` of both peers on the horizontally flipped ``images`` (scoring mode)."""
        flipped = torch.flip(images, dims=[3])
        out1 = scoring_pass(module.backbone, module.criterion, flipped, labels)
        out2 = scoring_pass(self.parts(module)["backbone"], self.peer_criterion(module), flipped, labels, out1.class_index)
        return selection_score(out1.per_sample_loss, out2.per_sample_loss, out1.logits, out2.logits, self.lam)

    @torch.no_grad()
    def score_dataset(self, trainer: pl.Trainer, module: "FaceRecognitionModule") -> Tensor:
        """``epoch`` mode: score the whole training loader once and keep the smallest ``⌊(1−R)·N⌋``."""
        train_loader = trainer.train_dataloader
        if train_loader is None:
            raise RuntimeError("CoTeaching(mode='epoch') needs the trainer's training dataloader")
        # A loader of its own: iterating the trainer's (persistent-worker) loader again would
        # reset the iterator the fit loop is about to use.
        loader = DataLoader(
            train_loader.dataset,
            batch_size=train_loader.batch_size,
            shuffle=False,
            num_workers=train_loader.num_workers,
            collate_fn=train_loader.collate_fn,
        )
        n = len(loader.dataset)  # type: ignore[arg-type]
        scores = torch.full((n,), float("inf"))
        # Scoring mode: batch statistics, no running-statistic or head-state update.
        for batch in loader:
            index = batch.require("index", "CoTeaching(mode='epoch')")
            batch = batch.to(module.device)
            scores[index.cpu()] = self.score(module, batch.images, batch.labels).float().cpu()
        # Samples never scored (inf) rank last: they are dropped first.
        return small_loss_mask(scores, self.current_rate(trainer))

    def mean_embedding(self, module: "FaceRecognitionModule") -> MeanEmbedding:
        """Inference network averaging both peers' embeddings (shares the module's weights)."""
        return MeanEmbedding(module.backbone, self.parts(module)["backbone"])

    def embedding_network(self, module: "FaceRecognitionModule") -> nn.Module | None:
        """The mean of both peers with ``eval_embedding: mean``; None (the module's backbone) otherwise."""
        return self.mean_embedding(module) if self.eval_embedding == "mean" else None

    # ------------------------------------------------------------- callbacks
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """``epoch`` mode: rank the training set (unless frozen and already ranked)."""
        if self.mode != "epoch":
            return
        frozen = self.freeze_after is not None and trainer.current_epoch > self.freeze_after
        if frozen and self.keep is not None:
            return
        self.keep = self.score_dataset(trainer, pl_module)  # type: ignore[arg-type]
        self.scored_epoch = trainer.current_epoch

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """With ``export_mean``: save the mean-of-peers embedding network next to the run."""
        if self.export_mean and trainer.is_global_zero:
            net = self.mean_embedding(pl_module)  # type: ignore[arg-type]
            path = Path(trainer.default_root_dir) / "coteaching_mean_embedding.pt"
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save({k: v.detach().cpu() for k, v in net.state_dict().items()}, path)

    # ---------------------------------------------------------- Method hooks
    def sample_weights(self, ctx: StepContext, module: "FaceRecognitionModule") -> Tensor:
        """The 0/1 selection mask ``[B]`` (peer 1's loss goes through the module's reducer with it)."""
        batch = ctx.batch
        rate = self.current_rate(module.trainer)
        if self.mode == "epoch":
            if self.keep is None:
                raise RuntimeError("CoTeaching(mode='epoch'): no selection yet (on_train_epoch_start did not run)")
            index = batch.require("index", "CoTeaching(mode='epoch')")
            mask = self.keep.to(index.device)[index]
        else:
            scores = self.score(module, batch.images, batch.labels)
            # Views of one sample (batch.views) are ranked together by their mean score.
            per_sample = scores.view(batch.views, batch.samples).mean(0)
            mask = small_loss_mask(per_sample, rate).repeat(batch.views)
        mask = mask & (batch.labels >= 0)
        n = len(batch)
        module.log("train/coteaching/forget_rate", float(rate), batch_size=n)
        module.log("train/coteaching/selected", mask.float().mean(), batch_size=n)
        if batch.clean_labels is not None:
            precision, recall = selection_quality(mask, batch.labels == batch.clean_labels)
            module.log("train/coteaching/precision", precision, batch_size=n, on_step=False, on_epoch=True)
            module.log("train/coteaching/recall", recall, batch_size=n, on_step=False, on_epoch=True)
        return mask.float()

    def loss_terms(self, ctx: StepContext, module: "FaceRecognitionModule") -> dict[str, Tensor]:
        """``peer_ce``: peer 2's loss reduced with every method's weights; ``agreement``: the mean-point term on all samples."""
        batch, out = ctx.batch, ctx.output
        peer = self.peer_forward(module, batch.images, batch.labels, ctx.target_margin, out.class_index)
        terms = {"peer_ce": reduce_loss(peer.per_sample_loss, ctx.weights, valid=batch.labels >= 0)}
        if self.agreement_weight > 0:
            terms["agreement"] = self.agreement_weight * mean_point_agreement(out.logits, peer.logits)
        return terms

    # ---------------------------------------------------------- checkpointing
    def state_dict(self) -> dict[str, Any]:
        """The epoch-mode selection and the epoch it was scored at."""
        return {"keep": None if self.keep is None else self.keep.cpu(), "scored_epoch": self.scored_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        keep = state_dict.get("keep")
        self.keep = None if keep is None else torch.as_tensor(keep, dtype=torch.bool)
        self.scored_epoch = int(state_dict.get("scored_epoch", -1))
