"""NanGuard: a NaN step is skipped and logged, training goes on; a NaN streak stops it cleanly."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from fr_lightning.callbacks import NanGuard, NonFiniteTrainingError
from tests.helpers import tiny_data, tiny_module, tiny_trainer


class PoisonBatches(pl.Callback):
    """Fills the images of the given steps with NaN (in place, before the forward)."""

    def __init__(self, steps: set[int]) -> None:
        self.steps = steps

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int) -> None:
        if trainer.global_step in self.steps:
            batch.images.fill_(float("nan"))


def all_finite(state: dict[str, torch.Tensor]) -> bool:
    return all(bool(torch.isfinite(v).all()) for v in state.values() if v.is_floating_point())


def test_single_nan_step_is_skipped_and_logged(tmp_path: Path) -> None:
    torch.manual_seed(0)
    guard = NanGuard(max_consecutive=2)
    module = tiny_module()
    trainer = tiny_trainer(tmp_path, callbacks=[PoisonBatches({1}), guard], max_steps=4, limit_val_batches=0)
    trainer.fit(module, datamodule=tiny_data())
    assert trainer.global_step == 4 and guard.skipped == 1 and guard.consecutive == 0
    assert trainer.callback_metrics["train/skipped_steps"] == 1.0
    assert all_finite(module.state_dict())  # weights and BatchNorm running statistics


def test_nan_streak_stops_with_diagnostic_and_keeps_last_good_checkpoint(tmp_path: Path) -> None:
    torch.manual_seed(0)
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=1, save_last=True, save_top_k=-1)
    module = tiny_module()
    trainer = tiny_trainer(
        tmp_path,
        callbacks=[PoisonBatches({2, 3, 4, 5}), NanGuard(max_consecutive=3), ckpt],
        max_steps=8,
        limit_val_batches=0,
        enable_checkpointing=True,
    )
    with pytest.raises(NonFiniteTrainingError) as err:
        trainer.fit(module, datamodule=tiny_data())
    message = str(err.value)
    assert "3 consecutive" in message and "loss/ce" in message and "embedding norms" in message
    last = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)
    assert all_finite(last["state_dict"])
    # The skipped steps did not move the weights: last.ckpt equals the model after step 2.
    good = torch.load(tmp_path / "ckpt" / "epoch=0-step=2.ckpt", weights_only=True)["state_dict"]
    for key, value in good.items():
        torch.testing.assert_close(last["state_dict"][key], value, rtol=0, atol=0)
