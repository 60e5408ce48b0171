"""Pose cores for PoseFace (a reconstruction; docs/methods.md, "PoseFace"): landmark pose targets, the
decorrelation loss and the pose-adaptive weights / margins. No Lightning inside.

Landmarks are insightface's 5 points in pixels, ``[B, 5, 2]`` in the order left eye, right eye,
nose tip, left mouth corner, right mouth corner.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = [
    "PoseHistogram",
    "decorrelation_loss",
    "normalize_landmarks",
    "pose_margins",
    "pose_weights",
    "yaw_bins",
    "yaw_proxy",
]

#: Guard against a degenerate (zero) inter-ocular distance, in pixels.
_MIN_IOD: float = 1e-3


def _check_landmarks(landmarks: Tensor) -> None:
    if landmarks.ndim != 3 or tuple(landmarks.shape[1:]) != (5, 2):
        raise ValueError(f"landmarks must have shape [B, 5, 2], got {list(landmarks.shape)}")


def _inter_ocular(landmarks: Tensor) -> Tensor:
    return (landmarks[:, 0] - landmarks[:, 1]).norm(dim=1).clamp_min(_MIN_IOD)


def yaw_proxy(landmarks: Tensor) -> Tensor:
    """Signed yaw proxy ``(x_nose − (x_le + x_re)/2) / ‖p_le − p_re‖`` clipped to [−1, 1].

    Positive when the nose sits right of the eye midpoint in the image (the synthetic renderer's
    positive yaw). Computed in float32 (float64 stays float64).

    Args:
        landmarks: ``[B, 5, 2]`` pixel landmarks.

    Returns:
        ``[B]`` proxy values.
    """
    _check_landmarks(landmarks)
    lm = landmarks.float() if landmarks.dtype != torch.float64 else landmarks
    mid_x = 0.5 * (lm[:, 0, 0] + lm[:, 1, 0])
    return ((lm[:, 2, 0] - mid_x) / _inter_ocular(lm)).clamp(-1.0, 1.0)


def normalize_landmarks(landmarks: Tensor) -> Tensor:
    """The 10-value pose target: landmarks centred on their mean and divided by the inter-ocular distance.

    Invariant to translation and scale of the face in the image, so what is left is pose (and
    expression). Args: landmarks ``[B, 5, 2]`` pixels. Returns ``[B, 10]`` as ``(x0, y0, x1, ...)``.
    """
    _check_landmarks(landmarks)
    lm = landmarks.float() if landmarks.dtype != torch.float64 else landmarks
    centred = lm - lm.mean(dim=1, keepdim=True)
    return (centred / _inter_ocular(lm)[:, None, None]).flatten(1)


def decorrelation_loss(x: Tensor, p: Tensor, eps: float = 1e-5) -> Tensor:
    """Mean squared cross-correlation between the batch-standardised columns of ``x`` and ``p``.

    ``C = x̂ᵀ p̂ / B`` with every column standardised over the batch (zero mean, unit std); the
    loss is ``mean(C²)``: 0 when no dimension of ``x`` is linearly correlated with one of ``p``,
    1 when they are identical 1-d signals.

    Args:
        x: ``[B, D]`` (e.g. the identity embedding).
        p: ``[B, K]`` (e.g. the pose code).
        eps: added to the variance before the square root (constant columns give 0, not NaN).

    Returns:
        A float32 scalar (float64 for float64 inputs).
    """
    if x.ndim != 2 or p.ndim != 2 or x.shape[0] != p.shape[0]:
        raise ValueError(f"x and p must be [B, D] and [B, K] with the same B, got {list(x.shape)} and {list(p.shape)}")
    dtype = torch.float64 if torch.float64 in (x.dtype, p.dtype) else torch.float32
    if x.shape[0] < 2:
        return (x.to(dtype).sum() * 0.0) + (p.to(dtype).sum() * 0.0)

    def standardise(t: Tensor) -> Tensor:
        t = t.to(dtype)
        t = t - t.mean(dim=0, keepdim=True)
        return t / (t.pow(2).mean(dim=0, keepdim=True) + eps).sqrt()

    corr = standardise(x).T @ standardise(p) / x.shape[0]
    return corr.pow(2).mean()


def yaw_bins(yaw: Tensor, n_bins: int) -> Tensor:
    """Index ``[B]`` (int64) of each ``|yaw|`` (proxy in [−1, 1]) among ``n_bins`` equal bins of [0, 1]."""
    return (yaw.detach().abs().float() * n_bins).long().clamp(0, n_bins - 1)


class PoseHistogram(nn.Module):
    """EMA frequency of ``|yaw|`` bins, kept as buffers so it is checkpointed with the model.

    ``freq`` starts uniform; the first :meth:`update` replaces it with the first batch's
    histogram (an EMA from uniform would take ~1/ema steps to forget the prior), later updates
    blend ``freq ← (1 − ema)·freq + ema·batch``.

    Args:
        bins: number of equal bins over ``|yaw| ∈ [0, 1]``.
        ema: weight of the newest batch.
    """

    freq: Tensor
    steps: Tensor

    def __init__(self, bins: int = 9, ema: float = 0.01) -> None:
        super().__init__()
        if bins < 1 or not 0.0 < ema <= 1.0:
            raise ValueError(f"PoseHistogram needs bins >= 1 and 0 < ema <= 1, got bins={bins}, ema={ema}")
        self.bins = int(bins)
        self.ema = float(ema)
        self.register_buffer("freq", torch.full((bins,), 1.0 / bins))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def counts(self, yaw: Tensor) -> Tensor:
        """Float32 count of samples per bin in ``yaw`` (``[bins]``)."""
        return torch.bincount(yaw_bins(yaw, self.bins), minlength=self.bins).float()

    @torch.no_grad()
    def update_counts(self, counts: Tensor) -> Tensor:
        """Fold a batch's bin counts (e.g. summed over ranks) into the EMA; returns ``freq``."""
        total = counts.sum()
        if total <= 0:
            return self.freq
        batch = (counts / total).to(self.freq)
        if int(self.steps) == 0:
            self.freq.copy_(batch)
        else:
            self.freq.mul_(1.0 - self.ema).add_(self.ema * batch)
        self.steps += 1
        return self.freq

    def update(self, yaw: Tensor) -> Tensor:
        """Fold the batch ``yaw`` (proxy values) into the EMA; returns ``freq``."""
        return self.update_counts(self.counts(yaw))


def pose_weights(yaw: Tensor, hist: Tensor, gamma: float = 0.5, min_freq: float = 1e-3) -> Tensor:
    """Per-sample weights ``freq(bin(|yaw|))^(−γ)`` normalised to batch mean 1.

    Args:
        yaw: ``[B]`` yaw proxy in [−1, 1].
        hist: ``[bins]`` bin frequencies (e.g. :attr:`PoseHistogram.freq`).
        gamma: exponent (0 = uniform weights).
        min_freq: frequency floor, so a bin the EMA has barely seen does not get an unbounded weight.

    Returns:
        ``[B]`` float32 weights, no gradient.
    """
    freq = hist.detach().float().clamp_min(min_freq)[yaw_bins(yaw, hist.numel()).to(hist.device)]
    w = freq.pow(-float(gamma))
    return w / w.mean().clamp_min(1e-12)


def pose_margins(yaw: Tensor, m0: float, dm: float) -> Tensor:
    """Pose-dependent margins ``m_i = m0 + Δm·|yaw_i|`` (``[B]`` float32, no gradient)."""
    return m0 + dm * yaw.detach().abs().float()
