"""Native W&B tables, line and bar plots, and summary values, sent from evaluation callbacks.

Every function is a no-op without a W&B logger and on ranks other than 0, so callbacks call
them unconditionally. PNGs stay the callbacks' business (they are written for every logger).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import lightning.pytorch as pl
import numpy as np

__all__ = ["bar_chart", "line_chart", "log_to_wandb", "roc_points", "update_summary", "wandb_runs"]


def wandb_runs(trainer: pl.Trainer) -> list[Any]:
    """The live W&B runs of ``trainer``'s loggers (empty on ranks > 0 and without W&B)."""
    from lightning.pytorch.loggers import WandbLogger

    if not trainer.is_global_zero:
        return []
    runs = []
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            run = logger.experiment
            if hasattr(run, "log") and hasattr(run, "summary"):
                runs.append(run)
    return runs


def log_to_wandb(trainer: pl.Trainer, data: Mapping[str, Any]) -> None:
    """``run.log(data)`` at the trainer's global step (as WandbLogger logs its metrics)."""
    for run in wandb_runs(trainer):
        run.log({**data, "trainer/global_step": trainer.global_step})


def update_summary(trainer: pl.Trainer, values: Mapping[str, Any]) -> None:
    """Write ``values`` into ``run.summary`` (kept as the run's final numbers in the W&B table)."""
    for run in wandb_runs(trainer):
        run.summary.update(dict(values))


def roc_points(fpr: np.ndarray, tpr: np.ndarray, n: int = 121, lowest: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """An ROC resampled on ``n`` log-spaced FAR values: ``(log10 FAR, TAR at FAR <= that value)``.

    A chart with a fixed, small number of points per set (the raw ROC has one per distinct
    score) whose x axis is already logarithmic, so curves of different runs overlay in W&B.
    """
    fpr = np.asarray(fpr, dtype=np.float64)
    tpr = np.asarray(tpr, dtype=np.float64)
    grid = np.logspace(np.log10(lowest), 0.0, n)
    order = np.argsort(fpr, kind="stable")
    best = np.maximum.accumulate(tpr[order])
    k = np.searchsorted(fpr[order], grid, side="right") - 1
    tar = np.where(k >= 0, best[np.clip(k, 0, None)], 0.0)
    return np.log10(grid), tar


def line_chart(xs: Sequence[Sequence[float]], ys: Sequence[Sequence[float]], keys: Sequence[str], title: str, xname: str) -> Any:
    """A W&B line-series chart (one line per key)."""
    import wandb

    return wandb.plot.line_series(
        xs=[[float(v) for v in x] for x in xs], ys=[[float(v) for v in y] for y in ys], keys=list(keys), title=title, xname=xname
    )


def bar_chart(values: Mapping[str, float], label: str, value: str, title: str) -> Any:
    """A W&B bar chart of named values."""
    import wandb

    table = wandb.Table(columns=[label, value], data=[[str(k), float(v)] for k, v in values.items()])
    return wandb.plot.bar(table, label, value, title=title)
