"""MHLR: halve the learning rate when the doubly-smoothed loss decrease stalls (FastFace's rule)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import lightning.pytorch as pl
import torch

_STATE_KEYS = ("last_loss", "diffs", "e1", "e2", "count", "power", "pending")


@dataclass
class MHLRState:
    """The pure MHLR rule (no Lightning): feed one loss per optimizer step, get "decay decided?".

    As the authors' code (FastFace ``lr_scheduler.py``, class ``MHLR``): the first loss only
    sets ``L``; with ``Δ_t = L_{t−1} − L_t`` the first difference gives ``E = α·Δ``, every later
    one the second-order recurrence ``E_t = ω₁·E_{t−1} − ω₂·E_{t−2} + αβ·Δ_t`` with
    ``ω₁ = 2 − α − β``, ``ω₂ = (1 − α)(1 − β)`` and ``E_{t−2} = 0`` at the second difference.
    A step with ``E ≥ λ`` resets the counter; a step with ``E < λ`` increments it while it is
    below ``patience``, and otherwise resets it and takes a decision (``power += 1``), which is a
    decay unless ``max_decays`` decays were already taken. The caller applies a decision one
    optimizer step later (their scheduler steps before it decides): see :class:`MHLR`.

    Attributes:
        alpha: α, EMA rate of the loss decrease.
        beta: β, EMA rate of the smoothed decrease.
        threshold: λ, in loss units per step (depends on the loss scale).
        patience: their ``toler``; a decision on the ``patience + 1``-th stalled step in a row.
        max_decays: decisions after this many decays leave the LR as it is.
        last_loss: the previous loss (None before the first).
        diffs: loss differences seen so far.
        e1: ``E_{t−1}`` (the current E after an update).
        e2: ``E_{t−2}``.
        count: their ``count`` of stalled steps.
        power: their ``power``: decisions taken (decays plus decisions past ``max_decays``).
    """

    alpha: float = 0.001
    beta: float = 0.001
    threshold: float = 5e-5
    patience: int = 1000
    max_decays: int = 8
    last_loss: float | None = None
    diffs: int = 0
    e1: float = 0.0
    e2: float = 0.0
    count: int = 0
    power: int = 0

    @property
    def e(self) -> float:
        """The current smoothed loss decrease E."""
        return self.e1

    @property
    def decays(self) -> int:
        """Decays decided so far (at most ``max_decays``)."""
        return min(self.power, self.max_decays)

    def update(self, loss: float) -> bool:
        """Account one optimizer step's loss; True when a decay is decided at this step."""
        loss = float(loss)
        if self.last_loss is None:
            self.last_loss = loss
            return False
        delta = self.last_loss - loss
        if self.diffs == 0:
            e = self.alpha * delta
        else:
            w1 = 2.0 - self.alpha - self.beta
            w2 = (1.0 - self.alpha) * (1.0 - self.beta)
            e = w1 * self.e1 - w2 * self.e2 + self.alpha * self.beta * delta
        self.diffs += 1
        self.e2, self.e1, self.last_loss = self.e1, e, loss
        if e >= self.threshold:
            self.count = 0
            return False
        if self.count < self.patience:
            self.count += 1
            return False
        self.count = 0
        self.power += 1
        return self.power <= self.max_decays


class MHLR(pl.Callback):
    """MHLR learning-rate decay as a callback (docs/methods.md); pair it with a constant LR schedule.

    After each optimizer step the callback first applies the decision taken at the previous
    optimizer step (so, as in the authors' code, a decision at step t changes the LR used from
    step t + 2 on), then feeds this step's loss to :class:`MHLRState`. A decay divides the LR
    scheduler's ``base_lrs`` (so a per-step LambdaLR keeps it) and the optimizer's current LR
    by ``factor``. The loss is the mean over the step's micro-batches, averaged over ranks, so
    every rank decides together. The rule's state and a pending decision are checkpointed.
    Logs ``train/mhlr/e`` and ``train/mhlr/decays``.

    Args:
        alpha: α, EMA rate of the per-step loss decrease.
        beta: β, EMA rate of the smoothed decrease.
        threshold: λ; a smoothed decrease below it counts as a stall (scale it with the loss).
        patience_fraction: τ; patience = ``int(τ · total optimizer steps)``; a decay needs
            ``patience + 1`` stalled steps in a row.
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
        if not (0.0 < alpha <= 1.0 and 0.0 < beta <= 1.0):
            raise ValueError(f"MHLR: alpha and beta must be in (0, 1], got alpha={alpha}, beta={beta}")
        if patience_fraction < 0 or factor <= 0 or max_decays < 0:
            raise ValueError("MHLR: patience_fraction and max_decays must be >= 0 and factor > 0")
        self.patience_fraction = patience_fraction
        self.factor = factor
        self.state = MHLRState(alpha=alpha, beta=beta, threshold=threshold, max_decays=max_decays)
        self.pending = False
        self._losses: list[torch.Tensor] = []
        self._step = -1

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Patience from the run's total number of optimizer steps."""
        self.state.patience = int(self.patience_fraction * trainer.estimated_stepping_batches)
        self._step = trainer.global_step

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Collect micro-batch losses; at each optimizer step apply the pending decision, then decide."""
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is None:
            return
        self._losses.append(loss.detach().float())
        if trainer.global_step == self._step:
            return  # still accumulating gradients
        self._step = trainer.global_step
        mean = trainer.strategy.reduce(torch.stack(self._losses).mean(), reduce_op="mean")
        self._losses = []
        if self.pending:
            self.decay(trainer)
        self.pending = self.state.update(float(mean))
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
        """The rule's state (last loss, E history, counters) and the pending decision."""
        s = self.state
        return {
            "last_loss": s.last_loss, "diffs": s.diffs, "e1": s.e1, "e2": s.e2,
            "count": s.count, "power": s.power, "pending": self.pending,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the rule's state; a state saved by another MHLR version is refused by name."""
        unknown = sorted(set(state_dict) - set(_STATE_KEYS))
        if unknown:
            raise ValueError(
                f"MHLR checkpoint state has keys {unknown} this version does not know "
                f"(expected {list(_STATE_KEYS)}); it was saved by an older MHLR and cannot be resumed exactly"
            )
        self.pending = bool(state_dict.get("pending", False))
        for key in _STATE_KEYS[:-1]:
            if key in state_dict:
                setattr(self.state, key, state_dict[key])
