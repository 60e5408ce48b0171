"""Fine-tuning from published or earlier weights: ``init_from``, a backbone learning-rate scale, a frozen start.

:class:`~fr_lightning.FaceRecognitionModule` calls these when its ``init_from``,
``backbone_lr_scale`` or ``freeze_backbone_steps`` arguments are set (so all three land in the
run's config and W&B):

* :func:`initialise_from` loads the backbone strictly from an insightface ``backbone.pth``, a
  ``backbone.pth`` written by ``fr export`` or a ``.ckpt`` of ``fr fit`` (through
  :mod:`fr_lightning.deploy.weights`, the loader every command uses). From a ``.ckpt`` the
  classifier and head are kept when they fit (same class count), else re-initialised with one
  log line; method state (a co-teaching peer, a GABN branch, ...) is never carried over.
* :func:`split_backbone_groups` / :func:`apply_lr_scales` give the backbone's parameters
  ``lr x backbone_lr_scale`` (the schedule then scales every group alike).
* :class:`BackboneFreeze` keeps the backbone fixed for the first N optimizer steps, BatchNorm
  statistics included, while a new classifier warms up.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_info
from torch import nn

from fr_lightning.deploy.weights import load_backbone_state, read_weights, state_mismatch

__all__ = ["LR_SCALE_KEY", "BackboneFreeze", "apply_lr_scales", "initialise_from", "split_backbone_groups"]

#: Parameter-group key holding the factor applied to the group's learning rate.
LR_SCALE_KEY = "lr_scale"


def initialise_from(module: Any, path: str | Path) -> list[str]:
    """Load ``path`` into ``module`` (a FaceRecognitionModule, before its classifier is sharded).

    Returns:
        The lines logged (also sent to Lightning's rank-zero log).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not weights, or its backbone does not fit (the message names the
            missing / unexpected keys, shape differences and the backbone the file fits).
    """
    weights = read_weights(path)
    backbone_state = weights.backbone_state()
    load_backbone_state(module.backbone, backbone_state, weights.path)
    what = "checkpoint" if weights.kind == "checkpoint" else "backbone state_dict"
    lines = [f"init_from {weights.path}: backbone loaded from a {what} ({len(backbone_state)} tensors)"]
    if weights.kind == "checkpoint":
        lines.append(_classifier_and_head(module, weights.submodule_state("classifier"), weights.submodule_state("head")))
    for line in lines:
        rank_zero_info(line)
    return lines


def _classifier_and_head(module: Any, classifier: dict[str, Any], head: dict[str, Any]) -> str:
    """Keep the checkpoint's classifier and head when both fit this run; else leave both freshly initialised.

    Runs before the classifier is bound and sharded, so its state is the full matrix; tensors the
    classifier builds later from the backbone (F2C's gallery copy) are rebuilt, not carried over.
    """
    own_fc, own_head = module.classifier.state_dict(), module.head.state_dict()
    k = max(int(getattr(module.classifier, "subcenters", 1)), 1)
    theirs = classifier.get("weight")
    count = f"{theirs.shape[0] // k} classes" if theirs is not None and theirs.ndim == 2 else "no classifier weight"
    fc_problem = state_mismatch(own_fc, {n: t for n, t in classifier.items() if n in own_fc})
    head_problem = state_mismatch(own_head, {n: t for n, t in head.items() if n in own_head})
    if fc_problem or head_problem:
        if fc_problem:
            why = f"the checkpoint's classifier has {count}, this run's data {module.num_classes}: {fc_problem}"
        else:
            why = f"the checkpoint's head differs: {head_problem}"
        return f"init_from: classifier and head re-initialised ({why}); method state is not carried over"
    module.classifier.load_state_dict({n: t for n, t in classifier.items() if n in own_fc}, strict=True)
    module.head.load_state_dict({n: t for n, t in head.items() if n in own_head}, strict=True)
    return f"init_from: classifier ({count}) and head kept from the checkpoint; method state is not carried over"


def split_backbone_groups(groups: list[dict[str, Any]], backbone: nn.Module, scale: float) -> list[dict[str, Any]]:
    """Split each parameter group into its backbone part (tagged with ``lr_scale = scale``) and the rest.

    With ``scale == 1`` the groups are returned unchanged (same layout as without fine-tuning, so
    older checkpoints resume).
    """
    if scale == 1.0:
        return groups
    if scale < 0:
        raise ValueError(f"model.init_args.backbone_lr_scale must be >= 0, got {scale}")
    ids = {id(p) for p in backbone.parameters()}
    out = []
    for group in groups:
        inside = [p for p in group["params"] if id(p) in ids]
        outside = [p for p in group["params"] if id(p) not in ids]
        if inside:
            out.append({**group, "params": inside, LR_SCALE_KEY: float(scale)})
        if outside:
            out.append({**group, "params": outside})
    return out


def apply_lr_scales(optimizer: Any) -> None:
    """Multiply the learning rate of every group tagged by :func:`split_backbone_groups` (before the scheduler exists)."""
    for group in optimizer.param_groups:
        scale = group.get(LR_SCALE_KEY)
        if scale is not None:
            group["lr"] = group["lr"] * scale


class BackboneFreeze(pl.Callback):
    """Keeps the backbone fixed for the first ``steps`` optimizer steps: no update, BatchNorm statistics frozen.

    The backbone runs in eval mode during those steps (its BatchNorm uses and keeps its running
    statistics) and its gradients are dropped after backward, so the optimizer skips its
    parameters (no momentum, no weight decay). Gradients are still computed: under DDP every
    parameter must take part in each backward, which ``requires_grad = False`` would break.

    Args:
        steps: optimizer steps to keep the backbone fixed.
    """

    def __init__(self, steps: int) -> None:
        if steps < 0:
            raise ValueError(f"model.init_args.freeze_backbone_steps must be >= 0, got {steps}")
        self.steps = int(steps)
        self._frozen = False

    def _active(self, trainer: pl.Trainer) -> bool:
        return trainer.global_step < self.steps

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        if self._active(trainer):
            pl_module.backbone.eval()
            if not self._frozen:
                rank_zero_info(f"backbone frozen (weights and BatchNorm statistics) for the first {self.steps} steps")
            self._frozen = True
        elif self._frozen:
            pl_module.backbone.train()
            self._frozen = False
            rank_zero_info(f"backbone unfrozen at step {trainer.global_step}")

    def on_after_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._active(trainer):
            for p in pl_module.backbone.parameters():
                p.grad = None
