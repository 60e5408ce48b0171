"""MagFace: ArcFace margin growing with the feature magnitude, plus a magnitude regulariser."""

from __future__ import annotations

from torch import Tensor

from fr_lightning.heads.arcface import arc_target
from fr_lightning.heads.base import MarginHead, compute_dtype, register_head


@register_head
class MagFace(MarginHead):
    """MagFace (Meng et al., 2021): target ``s * cos(θ_y + m(a))`` with ``a = clamp(‖x‖, l_a, u_a)``.

    ``m(a)`` rises linearly from ``l_m`` at ``l_a`` to ``u_m`` at ``u_a`` (ArcFace fallback
    past π). The norm keeps its gradient through the margin. ``loss_terms`` adds
    ``g = λ_g·mean(a/u_a² + 1/a)``, which pulls magnitudes towards quality-ordered values.

    Args:
        s: logit scale.
        l_a: lower magnitude bound.
        u_a: upper magnitude bound.
        l_m: margin at ``l_a``.
        u_m: margin at ``u_a``.
        lambda_g: weight of the regulariser ``g``.
        straight_through: margin on the value only (then only ``g`` acts on the norms).
    """

    def __init__(
        self,
        s: float = 64.0,
        l_a: float = 10.0,
        u_a: float = 110.0,
        l_m: float = 0.45,
        u_m: float = 0.8,
        lambda_g: float = 35.0,
        straight_through: bool = False,
    ) -> None:
        super().__init__(s=s, straight_through=straight_through)
        self.l_a, self.u_a, self.l_m, self.u_m, self.lambda_g = l_a, u_a, l_m, u_m, lambda_g

    def magnitude(self, norms: Tensor | None) -> Tensor:
        """``a = clamp(‖x‖, l_a, u_a)``."""
        if norms is None:
            raise ValueError("MagFace needs the embedding norms: pass norms=...")
        return norms.to(compute_dtype(norms.dtype)).clamp(self.l_a, self.u_a)

    def target_logit(self, cos_y: Tensor, norms_y: Tensor | None) -> Tensor:
        """``cos(θ_y + m(a))`` with the ArcFace fallback."""
        a = self.magnitude(norms_y)
        m = self.l_m + (self.u_m - self.l_m) * (a - self.l_a) / (self.u_a - self.l_a)
        return arc_target(cos_y, m.to(cos_y.dtype))

    def loss_terms(self, norms: Tensor | None) -> dict[str, Tensor]:
        """``{"g": λ_g·mean(a/u_a² + 1/a)}``."""
        a = self.magnitude(norms)
        return {"g": self.lambda_g * (a / self.u_a**2 + 1.0 / a).mean()}
