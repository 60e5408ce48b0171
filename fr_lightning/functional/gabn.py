"""GABN pieces (a reconstruction; docs/methods.md, "GABN racial de-bias"): gradient attention maps, gradient reversal, top-N erasing.

Pure tensor functions; :class:`fr_lightning.methods.GABN` wires them into training and
:mod:`fr_lightning.eval.fairness` uses them for the attention overlays.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor


def gradient_attention_map(features: Tensor, score: Tensor, create_graph: bool = False) -> Tensor:
    """Grad-CAM style attention of each sample on its feature map, normalised to sum 1.

    ``α_k = mean_{h,w} ∂score/∂A_k`` and ``GAM = ReLU(Σ_k α_k A_k) / Σ_{h,w} ReLU(...)``.
    A sample whose map is zero everywhere gets the uniform map.

    Args:
        features: the feature map ``A`` ``[B, C, h, w]`` that ``score`` was computed from.
        score: per-sample scalar ``[B]`` (e.g. the target logit ``s·cos θ_y``); samples are
            summed before differentiating, so each row should depend on its own sample only.
        create_graph: keep the graph of the gradient so the map can feed a loss (double backward).

    Returns:
        ``[B, h, w]`` float32 maps, each summing to 1.
    """
    (grads,) = torch.autograd.grad(score.sum(), features, create_graph=create_graph, retain_graph=True)
    if not create_graph:
        features = features.detach()
    alpha = grads.float().mean(dim=(2, 3), keepdim=True)
    cam = F.relu((alpha * features.float()).sum(dim=1))
    total = cam.flatten(1).sum(dim=1)[:, None, None]
    uniform = torch.full_like(cam, 1.0 / (cam.shape[1] * cam.shape[2]))
    return torch.where(total > 1e-12, cam / total.clamp_min(1e-12), uniform)


class _GradReverse(torch.autograd.Function):
    """Identity forward, ``-λ·grad`` backward."""

    @staticmethod
    def forward(ctx, x: Tensor, lam: float) -> Tensor:  # type: ignore[override]
        ctx.lam = lam
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        return -ctx.lam * grad, None


def grad_reverse(x: Tensor, lam: float = 1.0) -> Tensor:
    """Gradient reversal layer: returns ``x``; the gradient flowing back is multiplied by ``-lam``."""
    return _GradReverse.apply(x, float(lam))


def top_cells(gam: Tensor, n: int) -> Tensor:
    """Boolean mask ``[B, h, w]`` of each map's ``n`` highest cells (ties broken by position)."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    flat = gam.detach().flatten(1)
    mask = torch.zeros_like(flat, dtype=torch.bool)
    if n > 0:
        mask.scatter_(1, flat.topk(min(n, flat.shape[1]), dim=1).indices, True)
    return mask.view_as(gam)


def erase_cells(images: Tensor, cells: Tensor, fill: Literal["zero", "mean"] = "zero") -> Tensor:
    """Erase the image patches under the ``True`` cells of a feature-map grid (out of place).

    Cell ``(i, j)`` of an ``h×w`` grid covers the rows/columns that nearest-neighbour upsampling
    maps to it (a ``16×16`` patch for a ``7×7`` map at 112 px).

    Args:
        images: ``[B, 3, H, W]`` normalised images.
        cells: ``[B, h, w]`` bool mask (e.g. from :func:`top_cells`).
        fill: ``zero`` (0 in normalised units, mid grey) or ``mean`` (each image's channel mean).
    """
    if fill not in ("zero", "mean"):
        raise ValueError(f"fill must be 'zero' or 'mean', got {fill!r}")
    pixel = F.interpolate(cells[:, None].float(), size=images.shape[-2:], mode="nearest").to(torch.bool)
    value = images.mean(dim=(2, 3), keepdim=True) if fill == "mean" else torch.zeros_like(images[:, :, :1, :1])
    return torch.where(pixel, value.to(images.dtype), images)


def attention_area(gam: Tensor) -> Tensor:
    """Fraction of cells attended above the uniform level ``1/(h·w)``, per sample ``[B]``."""
    cells = gam.shape[1] * gam.shape[2]
    return (gam.detach().flatten(1) > 1.0 / cells).float().mean(dim=1)


def warmup_factor(step: int, warmup: int) -> float:
    """Linear ramp ``min(1, step / warmup)`` (1 when ``warmup <= 0``)."""
    return 1.0 if warmup <= 0 else min(1.0, max(0.0, step / warmup))
