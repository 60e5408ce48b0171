"""MHLR: halve the learning rate when the doubly-smoothed loss decrease stalls."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import lightning.pytorch as pl
import torch


@dataclass
class MHLRState:
    """The pure MHLR rule (no Lightning): feed one loss per optimizer step, get "decay now?".

    ``Δ = L_{t-1} - L_t``; ``D ← (1-α)D + αΔ``; ``E ← (1-β)E + βD``. A step with ``E < λ``
    extends a run of stalled steps, any other step resets it; once the run is longer than
    ``patience`` steps the LR is divided by δ, the run restarts, at most ``max_decays`` times.

    Attributes:
        alpha: EMA rate of the loss decrease.
        beta: EMA rate of the smoothed decrease.
        threshold: λ, in loss units per step (depends on the loss scale).
        patience: T, consecutive stalled steps before a decay.
        max_decays: cap on the number of decays.
    """

    alpha: float = 0.001
    beta: float = 0.001
    threshold: float = 5e-5
    patience: int = 1000
    max_decays: int = 8
    last_loss: float | None = None
    d: float = 0.0
    e: float = 0.0
    stalled: int = 0
    decays: int = 0

    def update(self, loss: float) -> bool:
        """Account one optimizer step's loss; True when the LR should be divided now."""
        if self.last_loss is not None:
            delta = self.last_loss - loss
            self.d = (1 - self.alpha) * self.d + self.alpha * delta
            self.e = (1 - self.beta) * self.e + self.beta * self.d
            self.stalled = self.stalled + 1 if self.e < self.threshold else 0
        self.last_loss = loss
        if self.stalled > self.patience and self.decays < self.max_decays:
            self.decays += 1
            self.stalled = 0
            return True
        return False


class MHLR(pl.Callback):
    """MHLR learning-rate decay (METHODS.md §8) as a callback; pair it with a constant LR schedule.

    The decay divides the LR scheduler's ``base_lrs`` (so a per-step LambdaLR keeps it) and the
    optimizer's current LR. Under DDP the step loss is averaged over ranks so every rank decays
    together. Its EMAs and counters are checkpointed; the LR itself lives in the scheduler and
    optimizer state. Logs ``train/mhlr/e`` and ``train/mhlr/decays``.

    Args:
        alpha: EMA rate of the per-step loss decrease.
        beta: EMA rate of the smoothed decrease.
        threshold: λ; a smoothed decrease below it counts as a stall (scale it with the loss).
        patience_fraction: τ; a decay needs more than ``τ · total optimizer steps`` stalled steps in a row.
        factor: δ, the LR divisor.
        max_decays: at most this many decays.
    """

    def __init__(
        self,
        alpha: float = 0.001,
        beta: float = 0.001,
        threshold: float = 5e-5,
        patience_fraction: float = 0.05,
        factor: float = 2.0,
        max_decays: int = 8,
    ) -> None:
        self.patience_fraction = patience_fraction
        self.factor = factor
        self.state = MHLRState(alpha=alpha, beta=beta, threshold=threshold, max_decays=max_decays)
        self._losses: list[torch.Tensor] = []
        self._step = -1

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Patience from the run's total number of optimizer steps."""
        self.state.patience = int(self.patience_fraction * trainer.estimated_stepping_batches)
        self._step = trainer.global_step

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Collect micro-batch losses; at each optimizer step update the rule and maybe decay."""
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is None:
            return
        self._losses.append(loss.detach().float())
        if trainer.global_step == self._step:
            return  # still accumulating gradients
        self._step = trainer.global_step
        mean = trainer.strategy.reduce(torch.stack(self._losses).mean(), reduce_op="mean")
        self._losses = []
        if self.state.update(float(mean)):
            self.decay(trainer)
        pl_module.log("train/mhlr/e", self.state.e, on_step=True, on_epoch=False, rank_zero_only=True)
        pl_module.log("train/mhlr/decays", float(self.state.decays), on_step=True, on_epoch=False, rank_zero_only=True)

    def decay(self, trainer: pl.Trainer) -> None:
        """Divide every optimizer's LR (and its scheduler's base LRs) by ``factor``."""
        for config in trainer.lr_scheduler_configs:
            sched = config.scheduler
            if hasattr(sched, "base_lrs"):
                sched.base_lrs = [lr / self.factor for lr in sched.base_lrs]
        for optimizer in trainer.optimizers:
            for group in optimizer.param_groups:
                group["lr"] = group["lr"] / self.factor

    def state_dict(self) -> dict[str, Any]:
        """EMAs, counters and the last loss."""
        s = self.state
        return {"last_loss": s.last_loss, "d": s.d, "e": s.e, "stalled": s.stalled, "decays": s.decays}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore EMAs and counters."""
        for key, value in state_dict.items():
            setattr(self.state, key, value)
