"""Co-teaching core (docs/methods.md): selection score, small-loss mask, forget-rate schedule, mean-point agreement."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor


def symmetric_kl(logits1: Tensor, logits2: Tensor) -> Tensor:
    """Per-sample ``KL(p₂‖p₁) + KL(p₁‖p₂)`` of the two softmax distributions ``[B]`` (float32)."""
    log1 = F.log_softmax(logits1.float(), dim=1)
    log2 = F.log_softmax(logits2.float(), dim=1)
    p1, p2 = log1.exp(), log2.exp()
    return (p2 * (log2 - log1)).sum(1) + (p1 * (log1 - log2)).sum(1)


def selection_score(ce1: Tensor, ce2: Tensor, logits1: Tensor, logits2: Tensor, lam: float = 0.65) -> Tensor:
    """Small-loss selection score ``ℓ = (1−λ)(CE₁ + CE₂) + λ(KL(p₂‖p₁) + KL(p₁‖p₂))`` per sample.

    Args:
        ce1: per-sample supervised loss of peer 1 ``[B]``.
        ce2: per-sample supervised loss of peer 2 ``[B]``.
        logits1: peer 1's logits ``[B, C]``.
        logits2: peer 2's logits ``[B, C]``.
        lam: λ, weight of the disagreement (symmetric KL) part.

    Returns:
        Scores ``[B]`` (float32); small = probably clean.
    """
    return (1.0 - lam) * (ce1.float() + ce2.float()) + lam * symmetric_kl(logits1, logits2)


def kept_count(forget_rate: float, n: int) -> int:
    """Number of samples kept: ``int((1 − R)·N)`` in float64, as the authors' code computes it.

    The product is truncated as a double, so where ``(1 − R)·N`` is a whole number in exact
    arithmetic the float product can fall just below it and one sample fewer is kept
    (``R = 8·(0.4/9)``, ``N = 90``: 57, not 58). Kept on purpose: it is the authors' count.

    Args:
        forget_rate: R in ``[0, 1]``.
        n: number of samples ranked.
    """
    if not 0.0 <= forget_rate <= 1.0:
        raise ValueError(f"forget_rate must be in [0, 1], got {forget_rate}")
    return int((1.0 - float(forget_rate)) * int(n))


def small_loss_mask(scores: Tensor, forget_rate: float) -> Tensor:
    """Boolean mask ``[B]`` keeping the :func:`kept_count` smallest scores (ties: lower index first).

    Args:
        scores: per-sample scores ``[B]``.
        forget_rate: R in ``[0, 1]``, the fraction dropped.
    """
    n = scores.shape[0]
    keep = kept_count(forget_rate, n)
    mask = torch.zeros(n, dtype=torch.bool, device=scores.device)
    if keep > 0:
        order = torch.argsort(scores.detach().float(), stable=True)
        mask[order[:keep]] = True
    return mask


def forget_rate(t: int, tau: float, t_k: int, shape: Literal["authors", "linear"] = "authors") -> float:
    """Forget rate R at the 0-based epoch or step index ``t`` (the first epoch or step is ``t = 0``).

    ``authors`` (default): the MDA code's ``linspace(0, τ, T_k)[e]`` with ``e = t + 1`` (their
    epochs are numbered from 1), i.e. ``R = e·(τ/(T_k − 1))`` for ``e < T_k − 1`` and ``τ``
    from then on (``τ`` throughout when ``T_k <= 1``): the first epoch already drops
    ``τ/(T_k − 1)`` and ``τ`` is reached at ``t = T_k − 2``. ``linear``: the ramp from zero,
    ``R = τ·min(t/T_k, 1)`` (``τ`` throughout when ``T_k <= 0``): nothing dropped at ``t = 0``,
    ``τ`` reached at ``t = T_k``.

    Args:
        t: 0-based epoch or step index.
        tau: final forget rate τ (about the noise rate).
        t_k: ramp length T_k, in the unit of ``t``.
        shape: ``authors`` or ``linear``.
    """
    tau, t, t_k = float(tau), max(int(t), 0), int(t_k)
    if shape == "linear":
        return tau if t_k <= 0 else tau * min(t / t_k, 1.0)
    if shape != "authors":
        raise ValueError(f"forget_rate: shape must be 'authors' or 'linear', got {shape!r}")
    e = t + 1
    if t_k <= 1 or e >= t_k - 1:
        return tau
    return e * (tau / (t_k - 1))


def mean_point_agreement(z1: Tensor, z2: Tensor) -> Tensor:
    """``MSE(z₁, z̄) + MSE(z₂, z̄)`` with ``z̄ = (z₁ + z₂)/2`` the mean point (scalar, float32).

    The mean point is not detached: each peer is pulled towards the ensemble, which also moves.
    """
    z1, z2 = z1.float(), z2.float()
    mean = 0.5 * (z1 + z2)
    return F.mse_loss(z1, mean) + F.mse_loss(z2, mean)


def selection_quality(selected: Tensor, clean: Tensor) -> tuple[Tensor, Tensor]:
    """Precision and recall of a selection against a clean-sample mask (0 when undefined).

    Args:
        selected: boolean mask of selected samples ``[B]``.
        clean: boolean mask of samples whose label is correct ``[B]``.
    """
    hit = (selected & clean).sum().float()
    precision = hit / selected.sum().clamp_min(1).float()
    recall = hit / clean.sum().clamp_min(1).float()
    return precision, recall
