"""Logs how many corrupt training samples were skipped (``data/skipped``) when a source has ``skip_corrupt``."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch

__all__ = ["SkippedSamplesLogger"]


class SkippedSamplesLogger(pl.Callback):
    """Logs ``data/skipped``: corrupt samples skipped so far, summed over ranks and DataLoader workers.

    :class:`~fr_lightning.data.FaceDataModule` adds it by itself when the training source skips
    corrupt samples. The count is all-reduced every ``log_every_n_steps`` steps and at epoch end.
    """

    def _log(self, trainer: pl.Trainer, pl_module: pl.LightningModule, step: bool) -> None:
        skipped = getattr(trainer.datamodule, "skipped", None)
        if skipped is None:
            return
        total = torch.tensor(float(skipped), device=pl_module.device)
        total = trainer.strategy.reduce(total, reduce_op="sum")
        pl_module.log("data/skipped", total, on_step=step, on_epoch=not step, rank_zero_only=True)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        if trainer.global_step % max(1, trainer.log_every_n_steps) == 0:
            self._log(trainer, pl_module, step=True)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._log(trainer, pl_module, step=False)
