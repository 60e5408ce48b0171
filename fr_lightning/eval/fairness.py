"""Fairness evaluation: verification accuracy per demographic group, its spread, and attention overlays.

Per-group sets are ``synth-rfw-g0..g3`` (synthetic, one group each) or real RFW ``.bin`` files
(``African``, ``Asian``, ``Caucasian``, ``Indian``). Reported over the groups' 10-fold accuracies:
mean, population STD and the skewed error ratio ``SER = (1 − min acc) / (1 − max acc)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor

from fr_lightning.backbones.base import FaceBackbone
from fr_lightning.data.pairs import PairSet
from fr_lightning.data.transforms import normalize_images
from fr_lightning.eval.callbacks import VerificationCallback, log_image, log_replicated, run_after_verification
from fr_lightning.eval.plots import bar_plot
from fr_lightning.functional.gabn import gradient_attention_map
from fr_lightning.tracking.media import bar_chart, log_to_wandb, wandb_runs
from fr_lightning.utils.rundir import run_dir

__all__ = ["FairnessEvaluation", "attention_overlays", "embedding_attention", "fairness_summary", "find_group_sets"]

#: Set names (lower case) of the RFW test sets, recognised as group sets when no list is given.
RFW_NAMES: tuple[str, ...] = ("african", "asian", "caucasian", "indian")


def fairness_summary(accuracies: Mapping[str, float]) -> dict[str, float]:
    """Mean, population STD, min, max and SER of per-group accuracies (fractions in [0, 1]).

    SER is ``(1 − min) / (1 − max)``: 1 when all groups are equal; ``inf`` when the best group
    makes no error and another does.
    """
    if len(accuracies) < 2:
        raise ValueError(f"fairness needs at least two groups, got {list(accuracies)}")
    acc = np.asarray([float(v) for v in accuracies.values()], dtype=np.float64)
    worst, best = 1.0 - acc.min(), 1.0 - acc.max()
    ser = 1.0 if worst == 0.0 else (float("inf") if best == 0.0 else worst / best)
    return {"mean": float(acc.mean()), "std": float(acc.std()), "min": float(acc.min()), "max": float(acc.max()), "ser": ser}


def find_group_sets(sets: Sequence[PairSet], names: Sequence[str] | None = None) -> list[PairSet]:
    """The per-group verification sets: those named in ``names``, or else every set whose
    ``meta["group"]`` holds one group (synthetic ``group`` sets) or whose name is an RFW group.

    Raises:
        ValueError: when a name in ``names`` is not among the sets.
    """
    if names is not None:
        by_name = {p.name: p for p in sets}
        missing = [n for n in names if n not in by_name]
        if missing:
            raise ValueError(f"FairnessEvaluation: sets {missing} are not among the verification sets {list(by_name)}")
        return [by_name[n] for n in names]
    found = []
    for p in sets:
        group = p.meta.get("group")
        if (group is not None and len(np.unique(group)) == 1) or p.name.lower() in RFW_NAMES:
            found.append(p)
    return found


def embedding_attention(backbone: FaceBackbone, images: Tensor) -> Tensor:
    """Gradient attention maps ``[B, h, w]`` of the backbone's feature map (``forward_features``) for embeddings.

    Unseen identities have no target class, so the target is each embedding's own direction:
    ``score = x · x̂`` with ``x̂`` detached (the training GAM's target logit when an embedding
    sits on its class centre). Runs in eval mode with gradients on, whatever the caller's modes.
    """
    was_training = backbone.training
    backbone.eval()
    try:
        with torch.inference_mode(False), torch.enable_grad():
            # A clone made here is a normal (not inference) tensor.
            emb, features = backbone.forward_with_features(images.clone())
            emb = emb.float()
            score = (emb * torch.nn.functional.normalize(emb.detach(), dim=1)).sum(dim=1)
            return gradient_attention_map(features, score).detach()
    finally:
        backbone.train(was_training)


def attention_overlays(images: np.ndarray, maps: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Blend JET-coloured attention maps over uint8 RGB images (``[B, H, W, 3]`` -> same)."""
    out = np.empty_like(images)
    for k, (img, gam) in enumerate(zip(images, maps)):
        heat = cv2.resize(gam.astype(np.float32), img.shape[1::-1], interpolation=cv2.INTER_LINEAR)
        heat = np.uint8(255 * heat / max(float(heat.max()), 1e-12))
        colour = cv2.cvtColor(cv2.applyColorMap(heat, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
        out[k] = np.uint8((1 - alpha) * img.astype(np.float32) + alpha * colour.astype(np.float32))
    return out


def _grid(rows: list[np.ndarray], labels: list[str]) -> np.ndarray:
    """One row of tiles per group with its label in the corner (uint8 RGB)."""
    width = max(r.shape[0] for r in rows)
    lines = []
    for tiles, label in zip(rows, labels):
        pad = np.zeros((width - tiles.shape[0], *tiles.shape[1:]), np.uint8)
        line = np.concatenate(list(np.concatenate([tiles, pad])), axis=1)
        cv2.putText(line, label, (2, 10), cv2.FONT_HERSHEY_PLAIN, 0.7, (255, 255, 255), 1, cv2.LINE_AA)
        lines.append(line)
    return np.concatenate(lines, axis=0)


class FairnessEvaluation(pl.Callback):
    """Logs per-group fairness after each validation: ``val/fairness/{mean,std,ser,min,max}``.

    The model adds one automatically; it stays silent unless at least two per-group sets exist
    (see :func:`find_group_sets`). Reads the accuracies the :class:`VerificationCallback` just
    computed; saves a bar chart ``<run>/plots/val_fairness_step<N>.png`` (and a native W&B bar chart
    ``val/fairness_chart``) and a grid of gradient
    attention overlays for the first ``overlays`` faces of each group
    ``<run>/plots/val_gam_step<N>.png`` (both also sent to W&B).

    Args:
        sets: names of the per-group verification sets (None = detect them).
        overlays: faces per group in the attention overlay grid (0 = no overlays).
        plot: save and log the bar chart.
    """

    def __init__(self, sets: list[str] | None = None, overlays: int = 4, plot: bool = True) -> None:
        if overlays < 0:
            raise ValueError(f"FairnessEvaluation: overlays must be >= 0, got {overlays}")
        self.sets = list(sets) if sets is not None else None
        self.overlays = int(overlays)
        self.plot = plot
        #: Last summary (mean, std, ser, min, max) and per-group accuracies.
        self.summary: dict[str, float] = {}
        self.accuracies: dict[str, float] = {}
        self._said = False

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        run_after_verification(trainer, self)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        verifier = next((cb for cb in trainer.callbacks if isinstance(cb, VerificationCallback)), None)
        groups = find_group_sets(trainer.datamodule.pair_sets("validate"), self.sets)
        if verifier is None or len(groups) < 2:
            if not self._said:
                rank_zero_info("FairnessEvaluation: fewer than two per-group verification sets; no fairness metrics.")
                self._said = True
            return
        if any(p.name not in verifier.results for p in groups):
            return  # not every group was evaluated (a limited run)
        self.accuracies = {p.name: float(verifier.results[p.name]["acc"]) for p in groups}
        self.summary = fairness_summary(self.accuracies)
        for key, value in self.summary.items():
            log_replicated(pl_module, f"val/fairness/{key}", value)
        if not trainer.is_global_zero or trainer.fast_dev_run:
            return
        if wandb_runs(trainer):
            chart = bar_chart({k: 100 * v for k, v in self.accuracies.items()}, "group", "accuracy (%)", "accuracy per group")
            log_to_wandb(trainer, {"val/fairness_chart": chart})
        plots = run_dir(trainer) / "plots"
        if self.plot:
            path = bar_plot(
                {k: 100 * v for k, v in self.accuracies.items()},
                plots / f"val_fairness_step{trainer.global_step}.png",
                title=f"accuracy per group: STD {100 * self.summary['std']:.2f}, SER {self.summary['ser']:.2f}",
                ylabel="verification accuracy (%)",
            )
            log_image(trainer, "val/fairness", path)
        if self.overlays:
            path = self.save_overlays(pl_module, groups, plots / f"val_gam_step{trainer.global_step}.png")
            log_image(trainer, "val/gam", path)

    def save_overlays(self, pl_module: pl.LightningModule, groups: list[PairSet], path: Path) -> Path:
        """Write the attention overlay grid of the first faces of each group set."""
        backbone: FaceBackbone = pl_module.backbone  # type: ignore[assignment]
        device = next(backbone.parameters()).device
        rows, labels = [], []
        for pairs in groups:
            idx = np.arange(0, min(2 * self.overlays, pairs.num_images), 2)  # first image of each pair
            images = pairs.load(idx)
            maps = embedding_attention(backbone, normalize_images(images).to(device)).cpu().numpy()
            rows.append(attention_overlays(images, maps))
            labels.append(pairs.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), cv2.cvtColor(_grid(rows, labels), cv2.COLOR_RGB2BGR))
        return path
