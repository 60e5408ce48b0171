"""Low-resolution core: degradation (bicubic, anti-aliased down to r px, then back up) and LogExp.

Nothing here knows about Lightning; :class:`fr_lightning.methods.LowRes` wires it into
the training step and :mod:`fr_lightning.eval.lowres` into the evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


def degrade_to(images: Tensor, size: int) -> Tensor:
    """Down-scale ``[B, C, H, W]`` images to ``size`` px (anti-aliased bicubic) and back to ``H x W``.

    The output keeps the input's dtype and value range; ``size >= H`` returns a copy.
    """
    h, w = images.shape[-2:]
    if size >= max(h, w):
        return images.clone()
    x = images.float()
    small = F.interpolate(x, size=(size, size), mode="bicubic", antialias=True, align_corners=False)
    up = F.interpolate(small, size=(h, w), mode="bicubic", align_corners=False)
    return up.to(images.dtype)


def scale_sizes(sizes: Sequence[int], image_size: int, relative_to: int = 112) -> list[int]:
    """Resolution tiers given at a ``relative_to``-px reference, converted to px of ``image_size`` images.

    A tier of 14 at the 112-px reference is 7 px on a 56-px image: the face keeps the same
    fraction of its crop. ``relative_to=0`` means the tiers already are px of ``image_size``.
    Sizes of 0 (full resolution) stay 0; every other size is at least 1.
    """
    if relative_to < 0:
        raise ValueError(f"relative_to must be >= 0 (0 = absolute px), got {relative_to}")
    if relative_to == 0:
        return [int(s) for s in sizes]
    return [0 if s == 0 else max(1, int(round(s * image_size / relative_to))) for s in sizes]


def degrade(
    images: Tensor,
    sizes: Sequence[int],
    probs: Sequence[float],
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Degrade each image to a resolution tier drawn per sample.

    Args:
        images: float ``[B, C, H, W]``.
        sizes: resolution tiers in px (e.g. ``(7, 14, 20)``).
        probs: probability of each tier (normalised here).
        generator: torch generator for reproducible draws.

    Returns:
        ``(degraded images, drawn size per sample [B])``.
    """
    if len(sizes) != len(probs) or not sizes:
        raise ValueError(f"sizes {list(sizes)} and probs {list(probs)} must be non-empty and of equal length")
    p = torch.as_tensor(probs, dtype=torch.float64)
    if (p < 0).any() or p.sum() <= 0:
        raise ValueError(f"probs must be non-negative with a positive sum, got {list(probs)}")
    draw = torch.multinomial(p / p.sum(), images.shape[0], replacement=True, generator=generator)
    chosen = torch.as_tensor(sizes, dtype=torch.long)[draw]
    out = images.clone()
    for tier in chosen.unique().tolist():
        sel = (chosen == tier).nonzero(as_tuple=True)[0].to(images.device)
        out[sel] = degrade_to(images[sel], int(tier))
    return out, chosen


def degrade_uint8(images: np.ndarray, size: int) -> np.ndarray:
    """:func:`degrade_to` for uint8 RGB ``[N, H, W, 3]`` arrays (verification sets)."""
    t = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()
    out = degrade_to(t, size).round_().clamp_(0, 255).to(torch.uint8)
    return out.permute(0, 2, 3, 1).contiguous().numpy()


def _log1p_sum_expm1(u: Tensor, dim: tuple[int, ...]) -> Tensor:
    """``log(1 + Σ (exp(u) - 1))`` over ``dim`` for ``u >= 0``, without overflow or cancellation.

    Two exact rewrites, picked per row by the largest ``u``:

    * ``log1p(Σ expm1(u))`` — accurate near zero (no ``1 + tiny - 1``), used while ``max u < 50``
      (``expm1(50) * 1e6 ≈ 5e27`` is far from float32's limit);
    * ``L + log1p(-(n - 1) * exp(-L))`` with ``L = logsumexp(u)`` and ``n`` the number of summed
      terms (since ``1 + Σ (e^u - 1) = Σ e^u - (n - 1)``) — never overflows, used for large ``u``.

    Both branches stay finite with finite gradients everywhere (the first is evaluated on ``u``
    clamped to 50), so ``torch.where`` never mixes a NaN gradient in.
    """
    n = 1
    for d in dim:
        n *= u.shape[d]
    big = u.amax(dim=dim) >= 50.0
    small_branch = torch.log1p(torch.expm1(u.clamp_max(50.0)).sum(dim=dim))
    lse = torch.logsumexp(u, dim=dim)
    # (n-1)·exp(-L) < 1 always holds (L > log n when some u > 0); the clamp only guards rounding.
    big_branch = lse + torch.log1p(-((n - 1) * torch.exp(-lse)).clamp_max(1.0 - 1e-7))
    return torch.where(big, big_branch, small_branch)


def logexp_distance(x: Tensor, y: Tensor, p: float = 1.0, mode: Literal["pair", "batch"] = "pair") -> Tensor:
    """LogExp distance between paired embeddings (low-resolution training; docs/methods.md, "Low resolution").

    ``pair`` (the paper's formula): per pair ``1/(p·D) · log(1 + Σ_i (exp(|x_i − y_i|^p) − 1))``,
    averaged over the pairs. ``batch`` (the authors' released training code):
    ``1/(p·B) · log(1 + Σ_b Σ_i (exp(|x_bi − y_bi|^p) − 1))``, the whole batch inside one log.

    Near zero it behaves like L1 scaled by ``1/D`` (for ``p = 1`` every gradient entry is at most
    ``1/(B·D)`` in ``pair`` mode); a large error on one dimension takes nearly all the gradient,
    since dimension ``i`` gets the share ``exp(u_i) / (1 + Σ (exp(u) − 1))``. Computed in float32
    (or float64 for float64 inputs) through a log-sum-exp form, so differences of 1e3 and more
    give a finite loss and gradient.

    Args:
        x: embeddings ``[..., D]`` (e.g. the high-resolution view, raw, not normalised).
        y: embeddings of the same shape (e.g. the low-resolution view).
        p: exponent on ``|x − y|`` (> 0; the paper uses 1).
        mode: ``pair`` or ``batch`` (see above).

    Returns:
        A scalar tensor.
    """
    if x.shape != y.shape or x.ndim < 1:
        raise ValueError(f"logexp_distance needs two tensors of the same shape [..., D], got {tuple(x.shape)} and {tuple(y.shape)}")
    if p <= 0:
        raise ValueError(f"logexp_distance: p must be > 0, got {p}")
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    diff = (x.to(dtype) - y.to(dtype)).abs()
    if p == 1.0:
        u = diff
    else:
        # |d|^p has an infinite slope at 0 for p < 1: evaluate the power away from 0 and use 0
        # there, so the value is exact and the gradient at d = 0 is 0 (as |d|'s is) instead of NaN.
        u = torch.where(diff > 0, diff.clamp_min(1e-30).pow(p), torch.zeros_like(diff))
    flat = u.reshape(-1, u.shape[-1])
    dims = flat.shape
    if mode == "pair":
        return _log1p_sum_expm1(flat, dim=(1,)).mean() / (p * dims[1])
    if mode == "batch":
        return _log1p_sum_expm1(flat, dim=(0, 1)) / (p * dims[0])
    raise ValueError(f"logexp_distance: mode must be 'pair' or 'batch', got {mode!r}")
