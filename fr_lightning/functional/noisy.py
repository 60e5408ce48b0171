"""Co-teaching core (METHODS.md §6): selection score, small-loss mask, forget-rate ramp, mean-point agreement."""

from __future__ import annotations

import math

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


def small_loss_mask(scores: Tensor, forget_rate: float) -> Tensor:
    """Boolean mask ``[B]`` keeping the ``⌊(1 − R)·B⌋`` smallest scores (ties: lower index first).

    Args:
        scores: per-sample scores ``[B]``.
        forget_rate: R in ``[0, 1]``, the fraction dropped.
    """
    if not 0.0 <= forget_rate <= 1.0:
        raise ValueError(f"forget_rate must be in [0, 1], got {forget_rate}")
    n = scores.shape[0]
    keep = int(math.floor((1.0 - forget_rate) * n + 1e-9))
    mask = torch.zeros(n, dtype=torch.bool, device=scores.device)
    if keep > 0:
        order = torch.argsort(scores.detach().float(), stable=True)
        mask[order[:keep]] = True
    return mask


def forget_rate(t: float, tau: float, t_k: float) -> float:
    """Linear ramp of the forget rate: ``R(t) = τ·min(t / T_k, 1)`` (``τ`` at once when ``T_k <= 0``).

    Args:
        t: elapsed epochs or steps.
        tau: final forget rate (about the noise rate).
        t_k: length of the ramp in the same unit as ``t``.
    """
    if t_k <= 0:
        return float(tau)
    return float(tau) * min(max(float(t), 0.0) / float(t_k), 1.0)


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
