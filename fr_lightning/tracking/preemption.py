"""Preemption: SIGTERM (and SLURM's SIGUSR1) stop training with a checkpoint and exit code 99."""

from __future__ import annotations

__all__ = ["Preempted"]


class Preempted(RuntimeError):
    """Raised inside the training loop after a preemption signal once the checkpoint is written."""
