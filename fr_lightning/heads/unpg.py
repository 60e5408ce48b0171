"""UNPG: in-batch negative pairs appended to any softmax head's denominator."""

from __future__ import annotations

import torch
from torch import Tensor

from fr_lightning.heads.base import MarginHead, compute_dtype, register_head


@register_head
class UNPG(MarginHead):
    """UNPG (Jung et al., 2022): unified negative pair generation.

    Cosines ``S_ab`` of in-batch pairs ``a < b`` with ``y_a ≠ y_b`` (rows labelled -1 left
    out: their identity is unknown here) are filtered to ``[Q1 - w·IQR, Q3 + w·IQR]`` and
    appended to every row as extra columns ``s·S`` (negatives only, so they enter every
    denominator). Quartiles are the sorted values at ``⌊0.25·n⌋`` and ``⌊0.75·n⌋``, as in the
    authors' code. Gradients flow into the embeddings. No negative pair: the wrapped head's
    logits unchanged.

    Args:
        head: softmax margin head to wrap (ArcFace, CosFace, MagFace, ...).
        whisker: box-and-whisker factor w.
    """

    def __init__(self, head: MarginHead, whisker: float = 1.5) -> None:
        if not head.softmax:
            raise ValueError(f"UNPG needs a softmax head, got {type(head).__name__}")
        super().__init__(s=head.s)
        self.head = head
        self.whisker = whisker
        self.subcenters = head.subcenters

    def negative_pairs(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """Filtered negative-pair cosines ``[P]`` (sorted ascending)."""
        x = embeddings.to(compute_dtype(embeddings.dtype))
        a, b = torch.triu_indices(len(x), len(x), offset=1, device=x.device)
        keep = (labels[a] != labels[b]) & (labels[a] >= 0) & (labels[b] >= 0)
        with torch.autocast(x.device.type, enabled=False):  # pair cosines in float32 under AMP too
            sims = (x @ x.t())[a[keep], b[keep]].sort().values
        n = sims.numel()
        if n == 0:
            return sims
        q1, q3 = sims[int(0.25 * n)].detach(), sims[int(0.75 * n)].detach()
        spread = self.whisker * (q3 - q1)
        return sims[(sims >= q1 - spread) & (sims <= q3 + spread)]

    def forward(
        self, cosine: Tensor, labels: Tensor, norms: Tensor | None = None, embeddings: Tensor | None = None
    ) -> Tensor:
        """Wrapped head's logits ``[B, C]`` followed by ``s·S`` columns ``[B, P]``."""
        if embeddings is None:
            raise ValueError("UNPG needs the L2-normalised embeddings: pass embeddings=...")
        logits = self.head(cosine, labels, norms, embeddings)
        extra = self.negative_pairs(embeddings, labels).to(logits.dtype) * self.head.s
        return torch.cat([logits, extra.unsqueeze(0).expand(len(logits), -1)], dim=1)

    def loss_terms(self, norms: Tensor | None) -> dict[str, Tensor]:
        """The wrapped head's extra terms."""
        return self.head.loss_terms(norms)
