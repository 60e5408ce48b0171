"""Per-optimizer-step learning-rate schedules: warm-up then polynomial / cosine / multistep."""

from __future__ import annotations

import math
from typing import Literal


class LRSchedule:
    """A learning-rate factor as a function of the optimizer step.

    Steps are optimizer steps (``trainer.estimated_stepping_batches`` accounts for gradient
    accumulation and the number of devices), so a schedule means the same thing at any scale.

    Args:
        kind: shape after warm-up: ``poly`` (insightface's default), ``cosine``, ``multistep`` or ``constant``.
        warmup: warm-up length; a value < 1 is a fraction of all steps, otherwise a step count.
        power: exponent of the polynomial decay.
        milestones: for ``multistep``: fractions of all steps (< 1) or step counts where the LR is multiplied by ``gamma``.
        gamma: multistep decay factor.
        min_lr_ratio: floor of the factor for ``poly`` and ``cosine``.
    """

    def __init__(
        self,
        kind: Literal["poly", "cosine", "multistep", "constant"] = "poly",
        warmup: float = 0.0,
        power: float = 2.0,
        milestones: list[float] | None = None,
        gamma: float = 0.1,
        min_lr_ratio: float = 0.0,
    ) -> None:
        if warmup < 0:
            raise ValueError(f"lr_schedule.warmup must be >= 0, got {warmup}")
        self.kind = kind
        self.warmup = warmup
        self.power = power
        self.milestones = list(milestones or [])
        self.gamma = gamma
        self.min_lr_ratio = min_lr_ratio

    @staticmethod
    def _steps(value: float, total: int) -> int:
        return int(round(value * total)) if 0 < value < 1 else int(value)

    def factor(self, step: int, total_steps: int) -> float:
        """LR multiplier at optimizer step ``step`` of ``total_steps``."""
        total = max(int(total_steps), 1)
        warm = self._steps(self.warmup, total)
        if step < warm:
            return (step + 1) / warm
        if self.kind == "constant":
            return 1.0
        if self.kind == "multistep":
            passed = sum(step >= self._steps(m, total) for m in self.milestones)
            return self.gamma**passed
        progress = min(max(step - warm, 0) / max(total - warm, 1), 1.0)
        if self.kind == "poly":
            value = (1.0 - progress) ** self.power
        else:
            value = 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * value
