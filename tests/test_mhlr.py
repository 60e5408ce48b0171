"""MHLR pinned to the authors' rule (FastFace ``lr_scheduler.py``, class ``MHLR``).

``their_rule`` below is an independent transcription of the rule as stated (not their code):
the first loss only sets L; the first difference sets E = α·Δ; afterwards
E_t = ω₁E_{t−1} − ω₂E_{t−2} + αβΔ_t (ω₁ = 2 − α − β, ω₂ = (1 − α)(1 − β), E_{t−2} = 0 at the
second difference). A step with E ≥ λ resets the counter; a stalled step with the counter at
``patience`` is a decision (counter reset), a decay while fewer than 8 decays were taken.
A decision at optimizer step t changes the LR used from step t + 2 on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch

from fr_lightning import LRSchedule
from fr_lightning.callbacks import MHLR, MHLRState
from tests.helpers import tiny_data, tiny_module, tiny_trainer

DATA = Path(__file__).resolve().parent / "data" / "mhlr"


def their_rule(losses: list[float], patience: int, a: float = 1e-3, b: float = 1e-3, lam: float = 5e-5) -> tuple[list[float], list[int]]:
    """(E after each loss from the second on, optimizer steps at which a decay is decided)."""
    e: list[float] = []
    for t in range(1, len(losses)):
        d = losses[t - 1] - losses[t]
        if t == 1:
            e.append(a * d)
        else:
            e.append((2 - a - b) * e[-1] - (1 - a) * (1 - b) * (e[-2] if t > 2 else 0.0) + a * b * d)
    decided, count, decisions = [], 0, 0
    for t, value in enumerate(e, start=1):
        if value >= lam:
            count = 0
        elif count < patience:
            count += 1
        else:
            count, decisions = 0, decisions + 1
            if decisions <= 8:
                decided.append(t)
    return e, decided


def chained_ema(losses: list[float], a: float = 1e-3, b: float = 1e-3) -> list[float]:
    """The same E as two first-order EMAs: D ← (1−α)D + αΔ, E ← (1−β)E + βD, started at D₁ = αΔ₁/β, E₁ = αΔ₁."""
    d1 = losses[0] - losses[1]
    dd, ee, out = a * d1 / b, a * d1, [a * d1]
    for t in range(2, len(losses)):
        dd = (1 - a) * dd + a * (losses[t - 1] - losses[t])
        ee = (1 - b) * ee + b * dd
        out.append(ee)
    return out


def feed(losses: list[float], **kw: Any) -> tuple[MHLRState, list[float], list[int]]:
    state = MHLRState(**kw)
    es, decided = [], []
    for t, loss in enumerate(losses):
        if state.update(loss):
            decided.append(t)
        if t:
            es.append(state.e)
    return state, es, decided


def load(name: str) -> list[float]:
    return [float(line) for line in (DATA / name).read_text().split()]


# ------------------------------------------------------------- hand-computed values
def test_first_values_hand_computed() -> None:
    # α = β = 0.5: ω₁ = 1, ω₂ = 0.25, αβ = 0.25. Losses 3, 2, 1.5, 1.5, 1.0:
    # E₁ = 0.5·1 = 0.5; E₂ = 0.5 − 0 + 0.25·0.5 = 0.625; E₃ = 0.625 − 0.25·0.5 + 0 = 0.5;
    # E₄ = 0.5 − 0.25·0.625 + 0.25·0.5 = 0.46875.
    _, es, _ = feed([3.0, 2.0, 1.5, 1.5, 1.0], alpha=0.5, beta=0.5)
    assert es == pytest.approx([0.5, 0.625, 0.5, 0.46875], abs=1e-15)
    # Defaults: the first value is α·Δ = 1e-3 for Δ = 1 (not α·β·Δ = 1e-6), then
    # E₂ = 1.998·1e-3 + 1e-6·Δ₂.
    _, es, _ = feed([5.0, 4.0, 3.5])
    assert es == pytest.approx([1e-3, 1.998e-3 + 0.5e-6], rel=1e-12)


def test_decisions_every_patience_plus_one_stalled_steps_and_at_most_eight() -> None:
    # Constant loss: E = 0 < λ from the second loss on (t = 1); patience 2 → decisions at t = 3, 6, 9, ...
    state, _, decided = feed([2.0] * 40, patience=2)
    assert decided == [3, 6, 9, 12, 15, 18, 21, 24]
    assert state.decays == 8 and state.power == 13  # decisions after the 8th leave the LR alone


def test_a_step_above_threshold_resets_the_count() -> None:
    # λ = 5e-7, patience 3. Flat loss: stalled from t = 1, decisions at t = 4, 8, 12. A drop of 1 at
    # t = 4 instead gives E₄ = αβ·1 = 1e-6 ≥ λ (then E₅ = ω₁·1e-6 = 1.998e-6, ...): reset, no decision.
    assert feed([2.0] * 15, patience=3, threshold=5e-7)[2] == [4, 8, 12]
    _, es, decided = feed([2.0] * 4 + [1.0] * 11, patience=3, threshold=5e-7)
    assert es[:5] == pytest.approx([0.0, 0.0, 0.0, 1e-6, 1.998e-6], abs=1e-18) and decided == []


# -------------------------------------------------- the transcription, recorded losses
@pytest.mark.parametrize("name", ["arcface_clean_6000.txt", "arcface_noisy40_6000.txt"])
def test_recorded_sequences_match_the_transcription(name: str) -> None:
    losses = load(name)
    patience = int(0.05 * len(losses))  # their toler = int(total_steps·τ)
    want_e, want_decided = their_rule(losses, patience)
    # The second-order form amplifies rounding slowly (a double root near 1): equal to ~1e-10 here.
    assert want_e == pytest.approx(chained_ema(losses), rel=1e-6, abs=1e-9)
    _, es, decided = feed(losses, patience=patience)
    assert es == want_e  # the same arithmetic, bit for bit
    assert decided == want_decided


def test_recorded_sequences_pinned() -> None:
    """Decisions on the recorded runs (values of the transcription above, checked by hand for the step pattern)."""
    clean, noisy = load("arcface_clean_6000.txt"), load("arcface_noisy40_6000.txt")
    assert feed(clean, patience=300)[2] == []  # the loss keeps falling: E ≥ λ throughout
    # 40 % noisy labels: the loss rises at the first difference, so E starts negative and stays
    # below λ; a decision every 301 steps until the cap of 8.
    assert feed(noisy, patience=300)[2] == [301 * k for k in range(1, 9)]


# ------------------------------------------------------------------------ callback
class LRRecorder(pl.Callback):
    def __init__(self) -> None:
        self.lrs: list[float] = []

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])


def test_callback_applies_a_decision_one_step_later_and_checkpoints(tmp_path: Path) -> None:
    torch.manual_seed(0)
    # λ = 1e9: every step from the second stalls; patience = int(0 · 5) = 0 → a decision at t = 1, 2, 3, 4.
    mhlr, lrs = MHLR(threshold=1e9, patience_fraction=0.0), LRRecorder()
    module = tiny_module(lr_schedule=LRSchedule(kind="constant"))
    trainer = tiny_trainer(tmp_path, callbacks=[mhlr, lrs], max_steps=5, limit_val_batches=0)
    trainer.fit(module, datamodule=tiny_data())
    # Decision at t takes effect at step t + 2: steps 0-2 at 0.1, then 0.05, 0.025.
    assert lrs.lrs == pytest.approx([0.1, 0.1, 0.1, 0.05, 0.025])
    assert mhlr.state.decays == 4 and mhlr.pending  # the decision of the last step is still pending
    assert trainer.lr_scheduler_configs[0].scheduler.base_lrs[0] == pytest.approx(0.1 / 8)
    restored = MHLR()
    restored.load_state_dict(mhlr.state_dict())
    assert restored.state_dict() == mhlr.state_dict() and restored.pending
    with pytest.raises(ValueError, match="stalled"):
        restored.load_state_dict({"d": 0.0, "e": 0.0, "stalled": 3, "decays": 1, "last_loss": 1.0})
