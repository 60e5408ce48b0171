"""The one reducer that turns per-sample losses and method weights into a scalar."""

from __future__ import annotations

import torch
from torch import Tensor


def combine_weights(weights: list[Tensor]) -> Tensor | None:
    """Multiply the per-sample weights / masks supplied by several methods (None if none)."""
    if not weights:
        return None
    out = weights[0].float()
    for w in weights[1:]:
        out = out * w.float()
    return out


def reduce_loss(per_sample: Tensor, weights: Tensor | None = None, valid: Tensor | None = None) -> Tensor:
    """Weighted mean ``sum(w * l) / sum(w)`` over valid samples.

    Args:
        per_sample: loss per sample ``[B]``.
        weights: non-negative weights or a 0/1 selection mask ``[B]`` (None = uniform).
        valid: boolean mask of samples that have a loss at all (e.g. label != -1).

    Returns:
        A scalar. An empty selection (all weights zero) gives an exact 0 that still depends on
        ``per_sample`` so the graph (and DDP's gradient hooks) stays intact.
    """
    w = torch.ones_like(per_sample, dtype=torch.float32) if weights is None else weights.float()
    if valid is not None:
        w = w * valid.float()
    total = w.sum()
    return (per_sample.float() * w).sum() / total.clamp_min(1e-12)
