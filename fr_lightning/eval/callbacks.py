"""Verification callback: collects flip-test embeddings and logs the 10-fold protocol's metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor

from fr_lightning.eval.plots import roc_plot
from fr_lightning.eval.report import TABLE_COLUMNS, best_cosine_threshold, set_report, table_rows, write_verification_json
from fr_lightning.eval.verification import evaluate_pairs, l2_normalize, pair_scores, roc_curve
from fr_lightning.tracking.media import line_chart, log_to_wandb, roc_points, update_summary, wandb_runs
from fr_lightning.utils.rundir import run_dir

#: Metrics of every set that are logged (``val@far=1e-3`` is logged for ``val``).
LOGGED_KEYS: tuple[str, ...] = ("acc", "acc_std", "val", "far", "tar@far=1e-4", "tar@far=1e-3", "tar@far=1e-2", "auc", "embedding_norm")


def log_replicated(pl_module: pl.LightningModule, name: str, value: float) -> None:
    """Log a metric every rank computed identically (from gathered embeddings, or broadcast).

    ``sync_dist=True`` with ``rank_zero_only=True`` tells Lightning the value needs no reduction:
    no collective runs, and no "use sync_dist=True" warning is printed under DDP.
    """
    pl_module.log(name, float(value), add_dataloader_idx=False, sync_dist=True, rank_zero_only=True)


def log_image(trainer: pl.Trainer, key: str, path: Path) -> None:
    """Send a PNG to the W&B logger (other loggers keep the file on disk only)."""
    for logger in trainer.loggers:
        if hasattr(logger, "log_image"):
            logger.log_image(key=key, images=[str(path)])


def run_after_verification(trainer: pl.Trainer, callback: pl.Callback) -> None:
    """Move ``callback`` right after the :class:`VerificationCallback` so it sees the current embeddings.

    The model adds the verification callback after the trainer's own callbacks; report callbacks
    listed in ``trainer.callbacks`` call this from ``setup``.
    """
    callbacks = trainer.callbacks
    verification = [k for k, cb in enumerate(callbacks) if isinstance(cb, VerificationCallback)]
    if verification and callbacks.index(callback) < verification[0]:
        callbacks.remove(callback)
        callbacks.insert(verification[0], callback)  # the verifier shifted left by one: insert after it


def summary_table(prefix: str, results: dict[str, dict[str, float]], step: int) -> str:
    """A compact text table of the main verification metrics (printed after each evaluation)."""
    lines = [f"\n{prefix} verification at step {step}:", f"  {'set':<18} {'acc':>16} {'tar@far=1e-3':>13} {'auc':>7}"]
    for name, m in results.items():
        acc = f"{100 * m['acc']:.2f} ± {100 * m['acc_std']:.2f}"
        lines.append(f"  {name:<18} {acc:>16} {100 * m.get('tar@far=1e-3', float('nan')):>12.2f}% {m.get('auc', float('nan')):>7.4f}")
    return "\n".join(lines)


class VerificationCallback(pl.Callback):
    """Evaluates every verification set of the data module after each validation/test run.

    Logs ``val/<set>/acc``, ``acc_std``, ``val@far=1e-3``, ``tar@far=1e-4|1e-3|1e-2``, ``auc`` and
    ``embedding_norm``; saves a ROC plot of all sets. Under DDP each rank embeds its share;
    embeddings are gathered and re-ordered by index so the protocol sees every pair once.

    On rank 0 after each validation it also writes ``<run dir>/verification.json`` (per set:
    ``acc``, ``acc_std``, TAR@FAR in %, ``auc``, and ``threshold``, the cosine similarity with the
    best accuracy over all pairs; "same" iff ``cos >= threshold``) and, with W&B, a
    ``<stage>/verification`` table, a native ``<stage>/roc_chart`` line chart, and the best
    values so far in ``run.summary`` as ``best/val/<set>/<metric>`` (the final values are the
    summary's ``val/<set>/<metric>``).

    Args:
        plots: save (and log to W&B) a ROC plot after each evaluation.
    """

    def __init__(self, plots: bool = True) -> None:
        self.plots = plots
        self._emb: dict[int, list[Tensor]] = {}
        self._idx: dict[int, list[Tensor]] = {}
        #: Last computed metrics per set (handy for scripts and experiments).
        self.results: dict[str, dict[str, float]] = {}
        #: Last gathered, L2-normalised embeddings per set (for extra reports such as per-yaw accuracy).
        self.embeddings: dict[str, np.ndarray] = {}
        #: Best validation report per set so far (``verification.json`` entries plus ``step``).
        self.best: dict[str, dict[str, float]] = {}

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best = dict(state_dict.get("best", {}))

    def _reset(self) -> None:
        self._emb, self._idx = {}, {}

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._reset()

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._reset()

    def _collect(self, outputs: Any, dataloader_idx: int) -> None:
        self._emb.setdefault(dataloader_idx, []).append(outputs["embeddings"].detach())
        self._idx.setdefault(dataloader_idx, []).append(outputs["index"].detach())

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:  # type: ignore[no-untyped-def]
        self._collect(outputs, dataloader_idx)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:  # type: ignore[no-untyped-def]
        self._collect(outputs, dataloader_idx)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._evaluate(trainer, pl_module, "val", trainer.datamodule.pair_sets("validate"))

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._evaluate(trainer, pl_module, "test", trainer.datamodule.pair_sets("test"))

    def _gather(self, pl_module: pl.LightningModule, k: int, n_images: int) -> np.ndarray | None:
        """All embeddings of set ``k`` in image order, or None if some were not embedded (limited runs)."""
        emb = torch.cat(self._emb[k])
        idx = torch.cat(self._idx[k])
        if pl_module.trainer.world_size > 1:
            emb = pl_module.all_gather(emb).flatten(0, 1)
            idx = pl_module.all_gather(idx).flatten(0, 1)
        out = np.zeros((n_images, emb.shape[1]), np.float32)
        seen = np.zeros(n_images, bool)
        index = idx.cpu().numpy()
        out[index] = emb.cpu().float().numpy()
        seen[index] = True
        if not seen.all():
            return None
        return out

    def _evaluate(self, trainer: pl.Trainer, pl_module: pl.LightningModule, prefix: str, sets: list) -> None:
        curves, reports = {}, {}
        for k, pairs in enumerate(sets):
            if k not in self._emb:
                continue
            raw = self._gather(pl_module, k, pairs.num_images)
            if raw is None:
                rank_zero_warn(f"{pairs.name}: only part of the set was embedded (limit_*_batches / fast_dev_run); not evaluated")
                continue
            metrics = evaluate_pairs(raw, pairs.issame)
            metrics["embedding_norm"] = float(np.linalg.norm(raw, axis=1).mean())
            self.results[pairs.name] = metrics
            self.embeddings[pairs.name] = l2_normalize(raw)
            for key in LOGGED_KEYS:
                if key in metrics:
                    log_replicated(pl_module, f"{prefix}/{pairs.name}/{'val@far=1e-3' if key == 'val' else key}", metrics[key])
            scores = pair_scores(raw)
            fpr, tpr, _ = roc_curve(scores, pairs.issame)
            curves[pairs.name] = (fpr, tpr)
            reports[pairs.name] = set_report(metrics, best_cosine_threshold(scores, pairs.issame))
        self._reset()
        if not trainer.is_global_zero or trainer.sanity_checking or not reports:
            return
        print(summary_table(prefix, {k: v for k, v in self.results.items() if k in curves}, trainer.global_step))
        if prefix == "val" and not trainer.fast_dev_run:
            write_verification_json(run_dir(trainer) / "verification.json", reports)
        self._report_to_wandb(trainer, prefix, reports, curves)
        if self.plots and not trainer.fast_dev_run:
            path = run_dir(trainer) / "plots" / f"{prefix}_roc_step{trainer.global_step}.png"
            roc_plot(curves, path)
            log_image(trainer, f"{prefix}/roc", path)

    def _report_to_wandb(self, trainer: pl.Trainer, prefix: str, reports: dict, curves: dict) -> None:
        """The per-set table, a native ROC chart and best-so-far summary values (W&B only)."""
        if prefix == "val":
            for name, report in reports.items():
                if name not in self.best or report["acc"] > self.best[name]["acc"]:
                    self.best[name] = {**report, "step": float(trainer.global_step)}
        if not wandb_runs(trainer):
            return
        import wandb

        if prefix == "val":
            update_summary(trainer, {f"best/val/{n}/{k}": v for n, r in self.best.items() for k, v in r.items()})
        update_summary(trainer, {f"{prefix}/{n}/threshold_cos": r["threshold"] for n, r in reports.items()})
        points = {name: roc_points(fpr, tpr) for name, (fpr, tpr) in curves.items()}
        log_to_wandb(
            trainer,
            {
                f"{prefix}/verification": wandb.Table(columns=TABLE_COLUMNS, data=table_rows(reports)),
                f"{prefix}/roc_chart": line_chart(
                    [x for x, _ in points.values()], [y for _, y in points.values()], list(points), title=f"{prefix} ROC", xname="log10 FAR"
                ),
            },
        )
