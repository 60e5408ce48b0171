"""Search-Softmax (Wang et al., ICML 2020): the searched family of target-probability modulations."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from fr_lightning.heads.base import MarginHead, register_head


def modulation_shift(a: Tensor, s: float, exponent: float) -> Tensor:
    """``ln(1 − A)`` with ``A = a·exp(s·exponent)`` (``a ≤ 0``), without overflow.

    Subtracting it from the scaled target logit turns the softmax target probability ``p``
    into ``p / (A·p + 1 − A)`` (see :class:`SearchSoftmax`).
    """
    # ln(1 + |a|·e^{s·κ}) = softplus(z), z = ln|a| + s·κ, as max(z, 0) + log1p(e^{−|z|}) (no
    # cut-off, unlike F.softplus's threshold); a = 0 gives exactly 0.
    mag = (-a).clamp(min=0.0)
    z = torch.log(mag.clamp(min=torch.finfo(mag.dtype).tiny)) + s * exponent
    out = z.clamp(min=0.0) + torch.log1p(torch.exp(-z.abs()))
    return torch.where(mag > 0, out, torch.zeros_like(out))


def probability_bins(p: Tensor, bins: int) -> Tensor:
    """Index ``j`` of the interval ``((j)/M, (j+1)/M]`` holding each target probability (``[0, 1/M]`` is bin 0)."""
    if bins == 1:
        return torch.zeros_like(p, dtype=torch.long)
    edges = torch.tensor([j / bins for j in range(1, bins)], dtype=p.dtype, device=p.device)
    return torch.bucketize(p, edges, right=False)


@register_head
class SearchSoftmax(MarginHead):
    """Search-Softmax's loss family: the target probability ``p`` becomes ``h(p)·p``.

    With the softmax target probability ``p = softmax(s·c)_y`` the loss is
    ``−log(h(p)·p)``, ``h(p) = 1 / (A·p + 1 − A)``, ``A = a_j·exp(s·κ)`` where ``j`` is the
    interval of ``p`` among ``bins`` equal intervals of [0, 1] (the interval is chosen on the
    detached ``p``; ``h`` is differentiated within it). ``a ≤ 0`` so ``h(p) ≤ 1``: the head
    reduces the target probability, which is what every margin-based softmax does. It is
    computed exactly as the logit ``s·c_y − ln(1 − A)`` (other columns ``s·c_j``), so the
    cross-entropy of the logits is that loss, value and gradient. ``a = 0`` is plain NormFace;
    one bin with constant ``a`` is CosFace with ``m = ln(1 − A)/s``. The search
    (:class:`fr_lightning.callbacks.LossSearch`) writes sampled values into the buffer
    ``a_current`` (checkpointed); ``a`` is the value used before and without the search.

    Args:
        s: logit scale (the authors' 32).
        a: modulation parameter per probability interval, each ``<= 0``; one value is used
            for every interval. The authors start from ``a = −1`` (CosFace-like, m ≈ 1/3 at s = 32).
        bins: number of equal probability intervals (1: the authors' "global" search;
            10: their "local" search).
        exponent: κ in ``A = a·exp(s·κ)``; None: the authors' 1/3 for one interval, 1/2 for several.
    """

    def __init__(self, s: float = 32.0, a: Sequence[float] = (-1.0,), bins: int = 1, exponent: float | None = None) -> None:
        super().__init__(s=s)
        values = [float(v) for v in a]
        if bins < 1:
            raise ValueError(f"SearchSoftmax: model.init_args.head.init_args.bins must be >= 1, got {bins}")
        if len(values) == 1:
            values = values * bins
        if len(values) != bins:
            raise ValueError(
                f"SearchSoftmax: model.init_args.head.init_args.a has {len(values)} values but bins={bins}; "
                "give one value or one per interval"
            )
        if any(v > 0 or not math.isfinite(v) for v in values):
            raise ValueError(f"SearchSoftmax: every value of model.init_args.head.init_args.a must be finite and <= 0, got {values}")
        self.a = values
        self.bins = bins
        self.exponent = exponent
        self.register_buffer("a_current", torch.tensor(values, dtype=torch.float64))

    @property
    def kappa(self) -> float:
        """The exponent κ actually used (``exponent`` or the authors' default)."""
        if self.exponent is not None:
            return float(self.exponent)
        return 1.0 / 3.0 if self.bins == 1 else 0.5

    def set_a(self, values: Tensor | Sequence[float]) -> None:
        """Use ``values`` (``bins`` numbers, each ``<= 0``) from the next forward pass on."""
        t = torch.as_tensor(values, dtype=self.a_current.dtype, device=self.a_current.device).reshape(-1)
        if t.numel() != self.bins or bool((t > 0).any()) or not bool(torch.isfinite(t).all()):
            raise ValueError(f"SearchSoftmax.set_a: need {self.bins} finite values <= 0, got {t.tolist()}")
        self.a_current.copy_(t)

    def target_shift(self, cos: Tensor, index: Tensor) -> Tensor:
        """Per-row ``ln(1 − A_i)`` (detached) for the prepared cosines ``[B, C]`` and targets ``[B, 1]``."""
        with torch.no_grad():
            a = self.a_current.to(cos.dtype)
            if self.bins == 1:
                j = torch.zeros(cos.shape[0], dtype=torch.long, device=cos.device)
            else:
                p = torch.softmax(self.s * cos, dim=1).gather(1, index).squeeze(1)
                j = probability_bins(p, self.bins)
            return modulation_shift(a, float(self.s), self.kappa)[j]

    def forward(
        self, cosine: Tensor, labels: Tensor, norms: Tensor | None = None, embeddings: Tensor | None = None
    ) -> Tensor:
        """Scaled logits ``[B, C]``: ``s·c_y − ln(1 − A_i)`` in the target column, ``s·c_j`` elsewhere."""
        cos = self.prepare(cosine)
        valid = labels >= 0
        index = labels.clamp(min=0).unsqueeze(1)
        logits = cos * self.s
        target = logits.gather(1, index).squeeze(1) - self.target_shift(cos, index)
        target = torch.where(valid, target, logits.gather(1, index).squeeze(1))
        return logits.scatter(1, index, target.unsqueeze(1))
