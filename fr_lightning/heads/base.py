"""Shared base of the margin heads: cosine -> target transform -> negatives transform -> scale."""

from __future__ import annotations

import inspect
from typing import ClassVar, TypeVar

import torch
from torch import Tensor, nn


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype margins are computed in for inputs of ``dtype``: float64 stays (numerical tests), else float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


class MarginHead(nn.Module):
    """Base: cosine -> target transform -> negatives transform -> scale.

    A head overrides :meth:`target_logit` (the positive) and/or :meth:`negative_logits`
    (the other columns); stateful heads also override :meth:`update_state`, which runs in
    training mode only, before the transforms. Rows whose label is ``-1`` (their positive
    lives on another shard) come out as plain ``s * c_j``. Inputs are never modified.

    Args:
        s: logit scale.
        straight_through: apply the target margin to the value only; the gradient is the
            one the plain cosine would get (convention of some well-known code bases).
    """

    eps: ClassVar[float] = 1e-6  # cosines are clamped to [-1 + eps, 1 - eps]: finite acos/sqrt gradients
    softmax: ClassVar[bool] = True  # False: the head supplies its own per-sample loss (SFace)
    subcenters: int = 1  # centres per class the classifier must produce (Sub-center ArcFace)

    def __init__(self, s: float = 64.0, straight_through: bool = False) -> None:
        super().__init__()
        self.s = s
        self.straight_through = straight_through

    def prepare(self, cosine: Tensor) -> Tensor:
        """Cosine ``[B, C]`` as a new float32 (float64 if given) tensor, clamped."""
        return cosine.to(compute_dtype(cosine.dtype)).clamp(-1.0 + self.eps, 1.0 - self.eps)

    def update_state(self, cos_y: Tensor, valid: Tensor, norms: Tensor | None) -> None:
        """Update running statistics (buffers) from a training batch; no-op by default."""

    def target_logit(self, cos_y: Tensor, norms_y: Tensor | None) -> Tensor:
        """Unscaled target logit ``[B]`` from the target cosine; identity by default."""
        return cos_y

    def negative_logits(self, cos: Tensor, cos_y: Tensor, target: Tensor, labels: Tensor) -> Tensor:
        """Unscaled logits ``[B, C]`` of the other columns; rows with label -1 stay as they are."""
        return cos

    def forward(
        self, cosine: Tensor, labels: Tensor, norms: Tensor | None = None, embeddings: Tensor | None = None
    ) -> Tensor:
        """Scaled logits ``[B, C]`` (float32; float64 for float64 input)."""
        cos = self.prepare(cosine)
        valid = labels >= 0
        index = labels.clamp(min=0).unsqueeze(1)
        cos_y = cos.gather(1, index).squeeze(1)
        if norms is not None:
            norms = norms.to(cos.dtype)
        if self.training:
            with torch.no_grad():
                self.update_state(cos_y.detach(), valid, None if norms is None else norms.detach())
        target = self.target_logit(cos_y, norms)
        if self.straight_through:
            target = cos_y + (target - cos_y).detach()
        # Rows without a positive write their own column-0 cosine back: untouched.
        target = torch.where(valid, target, cos_y)
        logits = self.negative_logits(cos, cos_y, target, labels)
        # scatter is out of place, so the in-place scaling only touches our own tensor.
        return logits.scatter(1, index, target.unsqueeze(1)).mul_(self.s)

    def loss(
        self, cosine: Tensor, labels: Tensor, norms: Tensor | None = None, embeddings: Tensor | None = None
    ) -> Tensor | None:
        """Per-sample loss ``[B]`` of a head with ``softmax = False`` (SFace); None for softmax heads.

        The criterion reads ``softmax`` to choose: softmax heads are trained with the
        classifier's cross-entropy of their logits and this is not called for them.
        """
        return None

    def loss_terms(self, norms: Tensor | None) -> dict[str, Tensor]:
        """Extra scalar loss terms (logged as ``train/loss/head/<name>``); none by default."""
        return {}

    def extra_repr(self) -> str:
        """Constructor arguments shown by ``print(head)`` (each stored under its own name)."""
        names = [n for n in inspect.signature(type(self).__init__).parameters if n != "self"]
        shown = [n for n in names if not isinstance(getattr(self, n, None), nn.Module)]
        return ", ".join(f"{n}={getattr(self, n)!r}" for n in shown)


#: Every registered head class by short name (its file name; ``configs/heads/<name>.yaml``, ``_`` as ``-``);
#: the head tests are generated from it.
HEADS: dict[str, type[MarginHead]] = {}

HeadT = TypeVar("HeadT", bound=type[MarginHead])


def register_head(cls: HeadT) -> HeadT:
    """Class decorator: list a head in :data:`HEADS` under the name of the file that defines it.

    One head per file, so the short name, the file and the config fragment share one name.
    """
    name = cls.__module__.rsplit(".", 1)[-1]
    if name in HEADS and HEADS[name] is not cls:
        raise ValueError(f"heads {HEADS[name].__name__} and {cls.__name__} are both registered as {name!r}; one head per file")
    HEADS[name] = cls
    return cls
