"""Tiny ``torch.distributed`` helpers that are no-ops without an initialised process group."""

from __future__ import annotations

import torch.distributed as dist
from torch import Tensor


def is_dist() -> bool:
    """True when a default process group is initialised."""
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    """Number of ranks (1 without a process group)."""
    return dist.get_world_size() if is_dist() else 1


def rank() -> int:
    """This process's global rank (0 without a process group)."""
    return dist.get_rank() if is_dist() else 0


def all_reduce_sum(t: Tensor) -> Tensor:
    """Sum of ``t`` over ranks, as a new tensor (``t`` itself when not distributed)."""
    if not is_dist():
        return t
    out = t.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def all_reduce_mean(t: Tensor) -> Tensor:
    """Mean of ``t`` over ranks, as a new tensor (``t`` itself when not distributed)."""
    if not is_dist():
        return t
    return all_reduce_sum(t) / world_size()
