"""MHLR: the pure rule on synthetic loss curves, and the callback on a tiny fit."""

from __future__ import annotations

from pathlib import Path

import torch

from fr_lightning.callbacks import MHLR, MHLRState
from tests.helpers import tiny_data, tiny_module, tiny_trainer


def run(losses: list[float], patience: int) -> MHLRState:
    state = MHLRState(patience=patience)
    for loss in losses:
        state.update(loss)
    return state


def test_plateau_decays_at_most_eight_times() -> None:
    state = run([3.0] * 2000, patience=100)
    assert state.decays == 8  # 2000 stalled steps would allow 19


def test_plateau_decays_once_per_patience() -> None:
    state = MHLRState(patience=100)
    decided = [state.update(2.0) for _ in range(350)]
    assert [i for i, d in enumerate(decided) if d] == [101, 202, 303]


def test_falling_loss_never_decays() -> None:
    state = run([20.0 - 0.001 * t for t in range(10000)], patience=500)
    assert state.decays == 0 and state.e > state.threshold


def test_fall_then_plateau_decays() -> None:
    losses = [20.0 - 0.001 * t for t in range(5000)] + [15.0] * 8000
    state = run(losses, patience=500)
    assert 1 <= state.decays <= 8


def test_callback_halves_lr_and_checkpoints_state(tmp_path: Path) -> None:
    torch.manual_seed(0)
    # A huge threshold makes every step a stall; patience = int(0.25 * 4 steps) = 1.
    mhlr = MHLR(threshold=1e9, patience_fraction=0.25)
    module = tiny_module()
    trainer = tiny_trainer(tmp_path, callbacks=[mhlr], max_steps=4, limit_val_batches=0)
    trainer.fit(module, datamodule=tiny_data())
    assert mhlr.state.decays == 1
    assert trainer.lr_scheduler_configs[0].scheduler.base_lrs[0] == 0.1 / 2
    restored = MHLR()
    restored.load_state_dict(mhlr.state_dict())
    assert restored.state_dict() == mhlr.state_dict()
