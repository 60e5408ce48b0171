"""Checkpoints that are on by default: at every training-epoch end, every ``every_minutes`` of
wall time, the last ``keep_last`` kept, each written atomically (temporary file, fsync, rename)."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint

from fr_lightning.utils.atomic import atomic_write

__all__ = ["AtomicCheckpointIO", "FaceCheckpoint"]


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` into ``.<name>.tmp-<pid>`` next to the target, fsync, then ``os.replace``.

    A process killed while saving leaves the previous checkpoint of that name intact.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"AtomicCheckpointIO takes no storage_options, got {storage_options}")
        atomic_write(Path(path), lambda f: torch.save(checkpoint, f))


class FaceCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` that also saves by wall time and keeps the newest ``keep_last`` files.

    Saves at every training-epoch end whether or not validation runs that epoch (Lightning's
    default saves only after validation when ``check_val_every_n_epoch > 1``), every
    ``every_minutes`` minutes in the middle of an epoch, and ``last.ckpt`` each time. Installs
    :class:`AtomicCheckpointIO` when the strategy uses the default ``TorchCheckpointIO``.

    Args:
        every_minutes: wall-time interval between mid-epoch saves; 0 turns them off.
        keep_last: step checkpoints kept (``step*.ckpt``, newest first); ``last.ckpt`` comes on top.
        **kwargs: ``ModelCheckpoint`` arguments.
    """

    def __init__(self, every_minutes: float = 30.0, keep_last: int = 3, **kwargs: Any) -> None:
        if kwargs.get("save_on_train_epoch_end") is None:
            kwargs["save_on_train_epoch_end"] = True  # not only after a validation
        super().__init__(**kwargs)
        if every_minutes < 0 or keep_last < 0:
            raise ValueError(f"checkpoint.every_minutes and checkpoint.keep_last must be >= 0, got {every_minutes}, {keep_last}")
        self.every_minutes = float(every_minutes)
        self.keep_last = int(keep_last)
        self._last_time = time.monotonic()

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        self._last_time = time.monotonic()

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any, **kwargs: Any) -> None:
        super().on_train_batch_end(trainer, *args, **kwargs)
        if self.every_minutes <= 0 or self._should_skip_saving_checkpoint(trainer):
            return
        due = time.monotonic() - self._last_time >= 60.0 * self.every_minutes
        if trainer.world_size > 1:
            due = trainer.strategy.broadcast(due)  # rank 0's clock decides for everyone
        if due:
            self.save_now(trainer)

    def save_now(self, trainer: pl.Trainer) -> None:
        """Save a step checkpoint and ``last.ckpt`` now (all ranks must call this)."""
        candidates = self._monitor_candidates(trainer)
        self._save_topk_checkpoint(trainer, candidates)
        self._save_last_checkpoint(trainer, candidates)

    def _save_checkpoint(self, trainer: pl.Trainer, filepath: str) -> None:
        super()._save_checkpoint(trainer, filepath)
        self._last_time = time.monotonic()
        self._prune(trainer)

    def _prune(self, trainer: pl.Trainer) -> None:
        """Delete step checkpoints beyond the newest ``keep_last`` (rank 0; last.ckpt is never touched)."""
        if not trainer.is_global_zero or self.dirpath is None or self.save_top_k != -1:
            return
        pattern = re.compile(r"step(\d+)(-v\d+)?\.ckpt$")
        steps = sorted((int(m.group(1)), p) for p in Path(self.dirpath).glob("step*.ckpt") if (m := pattern.match(p.name)))
        for _, path in steps[: max(0, len(steps) - self.keep_last)]:
            path.unlink(missing_ok=True)
            self.best_k_models.pop(str(path), None)
