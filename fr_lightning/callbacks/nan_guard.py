"""NanGuard: skip optimizer steps with a non-finite loss or gradient, stop after too many in a row."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor
from torch.optim import Optimizer


class NonFiniteTrainingError(RuntimeError):
    """Raised by :class:`NanGuard` after too many consecutive non-finite steps."""


class NanGuard(pl.Callback):
    """Skips optimizer steps whose loss or gradients are not finite; stops with a diagnostic.

    A bad step has its gradients set to ``None`` before the optimizer runs, so SGD/Adam leave
    the weights *and* their momentum untouched, and the module's buffers (BatchNorm running
    statistics, stateful-head statistics) are restored to their values before the step. The
    weights therefore never take a bad state, so no checkpoint written afterwards (``last.ckpt``
    included) can hold one; stopping raises :class:`NonFiniteTrainingError` (no checkpoint is
    written on an exception). Under DDP the decision is reduced over ranks so every replica skips
    the same steps. The LR schedule still advances on a skipped step.

    With ``precision=16-mixed`` non-finite *gradients* alone are the loss scaler's business (it
    skips the step and lowers the scale, several times in a row at the start of training), so
    only a non-finite loss counts there.

    Logs ``train/skipped_steps`` (total so far). The count is checkpointed.

    Args:
        max_consecutive: stop after this many consecutive bad optimizer steps.
        enabled: switch the guard off entirely.
    """

    def __init__(self, max_consecutive: int = 5, enabled: bool = True) -> None:
        self.max_consecutive = max_consecutive
        self.enabled = enabled
        self.skipped = 0
        self.consecutive = 0
        self._bad_loss: list[str] = []
        self._buffers: list[Tensor] = []

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        """Snapshot the module's buffers at the start of each optimizer step."""
        if self.enabled and not self._buffers:
            self._buffers = [b.detach().clone() for b in pl_module.buffers()]

    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: Tensor) -> None:
        """Remember which loss terms were non-finite in this (micro-)batch."""
        if not self.enabled or bool(torch.isfinite(loss.detach()).all()):
            return
        terms = getattr(pl_module, "step_diagnostics", {})
        bad = [k for k, v in terms.items() if k.startswith("loss/") and not bool(torch.isfinite(v).all())]
        self._bad_loss.append(", ".join(bad) or "train/loss")

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Optimizer) -> None:
        """Decide (same on every rank) whether to skip, and skip by dropping the gradients."""
        if not self.enabled:
            return
        # Sparse (row-sampled Partial FC) gradients are checked through their stored values.
        grads = [p.grad.coalesce()._values() if p.grad.is_sparse else p.grad for p in pl_module.parameters() if p.grad is not None]
        scaler = getattr(trainer.precision_plugin, "scaler", None)
        grads_bad = False
        if grads and scaler is None:
            grads_bad = not bool(torch.isfinite(torch.stack(torch._foreach_norm(grads))).all())
        bad = trainer.strategy.reduce_boolean_decision(bool(self._bad_loss) or grads_bad, all=False)
        if bad:
            self.skipped += 1
            self.consecutive += 1
            for group in optimizer.param_groups:
                for p in group["params"]:
                    p.grad = None
            with torch.no_grad():
                for b, saved in zip(pl_module.buffers(), self._buffers):
                    b.copy_(saved)
        else:
            self.consecutive = 0
        pl_module.log("train/skipped_steps", float(self.skipped), on_step=True, on_epoch=False, rank_zero_only=True)
        reason = "; ".join(self._bad_loss) or "non-finite gradients"
        self._bad_loss, self._buffers = [], []
        if bad and self.consecutive >= self.max_consecutive:
            raise NonFiniteTrainingError(self._diagnostic(trainer, pl_module, reason, scaler))

    def _diagnostic(self, trainer: pl.Trainer, pl_module: pl.LightningModule, reason: str, scaler: Any) -> str:
        lines = [
            f"NanGuard: {self.consecutive} consecutive non-finite steps (limit {self.max_consecutive}) "
            f"at global step {trainer.global_step}; {self.skipped} skipped in total.",
            f"  non-finite: {reason}",
        ]
        if scaler is not None:
            lines.append(f"  AMP grad scale: {float(scaler.get_scale()):g}")
        norms = getattr(pl_module, "step_diagnostics", {}).get("embedding_norm")
        if norms is not None and norms.numel():
            finite = norms[torch.isfinite(norms)]
            stats = f"min {finite.min():.3g} mean {finite.mean():.3g} max {finite.max():.3g}" if finite.numel() else "none finite"
            lines.append(f"  embedding norms: {stats} ({int((~torch.isfinite(norms)).sum())} non-finite of {norms.numel()})")
        lines.append("  The weights were not updated by these steps; the last checkpoint holds the last good state.")
        lines.append("  Try a lower LR, more warm-up, gradient clipping (configs/scale/grad-clip.yaml) or bf16 instead of fp16.")
        return "\n".join(lines)

    def state_dict(self) -> dict[str, int]:
        """Skip counters (resumed runs keep counting)."""
        return {"skipped": self.skipped, "consecutive": self.consecutive}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        """Restore the skip counters."""
        self.skipped = int(state_dict.get("skipped", 0))
        self.consecutive = int(state_dict.get("consecutive", 0))
