"""AdaFace: margin adapted to image quality through the feature norm."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from fr_lightning.heads.base import MarginHead, compute_dtype, register_head
from fr_lightning.utils.dist import all_reduce_sum


@register_head
class AdaFace(MarginHead):
    """AdaFace (Kim et al., 2022), following the authors' code.

    ``ẑ = clip(h·(‖x‖ - μ)/(σ + 1e-3), -1, 1)`` (detached), with μ, σ EMAs of the batch norm
    mean and unbiased std; target ``s * (cos(clip(θ_y - m·ẑ, ε, π - ε)) - (m·ẑ + m))``,
    ε = 1e-3. Norms are clipped to [0.001, 100] first. In training mode the EMAs update
    before use, from sum / sum of squares / count all-reduced across ranks (all rows).
    Every cosine is first clamped to ``±(1 − clamp_eps)``, the authors' 1e-3 by default (the
    other heads use 1e-6): the logits and the zero gradient of cosines beyond it are theirs.

    Args:
        s: logit scale.
        m: margin.
        h: concentration of the norm-to-margin map.
        t_alpha: EMA rate of ``batch_mean`` (init 20) and ``batch_std`` (init 100) buffers.
        straight_through: margin on the value only, NormFace gradient.
        clamp_eps: cosines are clamped to ``[-1 + clamp_eps, 1 - clamp_eps]`` (authors: 1e-3).
    """

    def __init__(
        self,
        s: float = 64.0,
        m: float = 0.4,
        h: float = 0.333,
        t_alpha: float = 0.01,
        straight_through: bool = False,
        clamp_eps: float = 1e-3,
    ) -> None:
        super().__init__(s=s, straight_through=straight_through)
        if not 0.0 < clamp_eps < 1.0:
            raise ValueError(f"AdaFace: clamp_eps must be in (0, 1), got {clamp_eps}")
        self.m, self.h, self.t_alpha, self.clamp_eps = m, h, t_alpha, clamp_eps
        self.register_buffer("batch_mean", torch.tensor(20.0))
        self.register_buffer("batch_std", torch.tensor(100.0))

    def prepare(self, cosine: Tensor) -> Tensor:
        """Cosine ``[B, C]`` as a new float32 (float64 if given) tensor, clamped to ``±(1 − clamp_eps)``."""
        return cosine.to(compute_dtype(cosine.dtype)).clamp(-1.0 + self.clamp_eps, 1.0 - self.clamp_eps)

    def update_state(self, cos_y: Tensor, valid: Tensor, norms: Tensor | None) -> None:
        """EMA of the global batch mean/std of the norms (kept when fewer than 2 samples)."""
        n = _need(norms).clamp(0.001, 100.0).double()
        count, total, squares = all_reduce_sum(torch.stack([n.new_tensor(n.numel()), n.sum(), (n * n).sum()]))
        mean = total / count.clamp(min=1.0)
        std = ((squares - count * mean * mean) / (count - 1.0).clamp(min=1.0)).clamp(min=0.0).sqrt()
        a, ok = self.t_alpha, count > 1
        self.batch_mean.copy_(torch.where(ok, a * mean + (1 - a) * self.batch_mean, self.batch_mean))
        self.batch_std.copy_(torch.where(ok, a * std + (1 - a) * self.batch_std, self.batch_std))

    def target_logit(self, cos_y: Tensor, norms_y: Tensor | None) -> Tensor:
        """``cos(clip(θ_y + g_ang)) - g_add`` with ``g_ang = -m·ẑ``, ``g_add = m·ẑ + m``."""
        norms = _need(norms_y).detach().clamp(0.001, 100.0)
        z = ((norms - self.batch_mean) / (self.batch_std + 1e-3) * self.h).clamp(-1.0, 1.0).to(cos_y.dtype)
        theta = (torch.acos(cos_y) - self.m * z).clamp(1e-3, math.pi - 1e-3)
        return torch.cos(theta) - (self.m * z + self.m)


def _need(norms: Tensor | None) -> Tensor:
    if norms is None:
        raise ValueError("AdaFace needs the embedding norms: call head(cosine, labels, norms=...)")
    return norms
