"""Pair-based losses: FaceNet's triplet loss with online mining and Centroid Triplet Loss (CTL).

No Lightning inside; no classifier involved. See docs/methods.md, "Pair-based objectives".

- :func:`triplet_loss` (Schroff et al., CVPR 2015): embeddings are L2-normalised, the distance is
  the squared Euclidean one, each triplet contributes ``max(d(a,p) − d(a,n) + α, 0)``. Mining:

  - ``semihard`` (FaceNet's rule, in the form TensorFlow's ``triplet_semihard_loss`` made
    standard): every anchor-positive pair ``(a, p)``, ``a ≠ p``; its negative is the closest one
    *farther* than the positive (``d(a,n) > d(a,p)``); when no negative is farther, the farthest
    negative. Mean over the anchor-positive pairs.
  - ``hard`` (batch-hard, Hermans et al. 2017): per anchor, the farthest positive and the closest
    negative; mean over the anchors that have both.
  - ``all`` (batch-all, Hermans et al.): every valid triplet; mean over the triplets whose term
    is > 0 (0 when none is).

  The mining is written here rather than taken from pytorch-metric-learning: its
  ``TripletMarginMiner(type_of_triplets="semihard")`` returns every triplet with
  ``d(a,p) < d(a,n) < d(a,p) + α``, which is not FaceNet's one-negative-per-pair rule, and the
  core is short enough not to justify a dependency (it would pull in scikit-learn, joblib,
  threadpoolctl and tqdm).

- :func:`centroid_triplet_loss` (Wieczorek et al.): as the authors' released code
  (``centroids-reid``) computes it, not the paper's equation. For a batch of P identities × K
  images, slot ``i`` takes the ``i``-th sample of each class (in batch order) as that class's
  query and the mean of the class's *other* samples as its centroid (the query is left out of its
  own centroid); the slot's loss is a batch-hard triplet loss over the ``2P`` points
  ``[queries; centroids]`` labelled ``[c; c]``, with the plain Euclidean distance
  ``sqrt(clamp(‖x−y‖², 1e-12))`` on unnormalised features. CTL is the mean over the slots that
  have at least two classes. A class with fewer than ``i + 2`` samples (so no query in slot ``i``
  or an empty centroid) takes no part in slot ``i``.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["Mining", "batch_hard_loss", "centroid_triplet_loss", "euclidean_distances", "triplet_loss"]

Mining = Literal["semihard", "hard", "all"]


def squared_distances(x: Tensor) -> Tensor:
    """Pairwise squared Euclidean distances ``[N, N]`` (clamped at 0; exact 0 on the diagonal)."""
    sq = (x * x).sum(dim=1)
    d = (sq[:, None] + sq[None, :] - 2.0 * (x @ x.t())).clamp_min(0.0)
    return d * (1.0 - torch.eye(len(x), dtype=x.dtype, device=x.device))


def euclidean_distances(x: Tensor, eps: float = 1e-12) -> Tensor:
    """Pairwise Euclidean distances ``sqrt(clamp(‖x_i − x_j‖², eps))`` ``[N, N]`` (the released CTL
    code's form: the diagonal is ``sqrt(eps)``, not 0, which keeps the gradient finite)."""
    sq = (x * x).sum(dim=1)
    return (sq[:, None] + sq[None, :] - 2.0 * (x @ x.t())).clamp_min(eps).sqrt()


def _check(embeddings: Tensor, labels: Tensor, who: str) -> None:
    if embeddings.dim() != 2:
        raise ValueError(f"{who}: embeddings must be [B, D], got {tuple(embeddings.shape)}")
    if labels.shape != (embeddings.shape[0],):
        raise ValueError(f"{who}: labels {tuple(labels.shape)} do not match embeddings {tuple(embeddings.shape)}")


def triplet_loss(embeddings: Tensor, labels: Tensor, margin: float = 0.2, mining: Mining = "semihard") -> Tensor:
    """FaceNet's triplet loss over a batch with online mining (see the module docstring).

    Args:
        embeddings: raw embeddings ``[B, D]`` (L2-normalised here).
        labels: identity of each row ``[B]``.
        margin: ``α`` (FaceNet: 0.2).
        mining: ``semihard``, ``hard`` or ``all``.

    Returns:
        The scalar loss; 0 (with a graph) when the batch has no valid pair or triplet.
    """
    _check(embeddings, labels, "triplet_loss")
    dtype = torch.promote_types(embeddings.dtype, torch.float32)
    x = F.normalize(embeddings.to(dtype), dim=1)
    d = squared_distances(x)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    pos = same & ~eye
    neg = ~same
    zero = d.sum() * 0.0
    if mining == "hard":
        valid = pos.any(dim=1) & neg.any(dim=1)
        if not bool(valid.any()):
            return zero
        d_ap = d.masked_fill(~pos, float("-inf")).amax(dim=1)
        d_an = d.masked_fill(~neg, float("inf")).amin(dim=1)
        return F.relu(d_ap - d_an + margin)[valid].mean()
    if mining == "all":
        t = d[:, :, None] - d[:, None, :] + margin  # [a, p, n]
        valid = pos[:, :, None] & neg[:, None, :]
        terms = F.relu(t)[valid]
        active = terms > 0
        return terms[active].mean() if bool(active.any()) else zero
    if mining == "semihard":
        a_idx, p_idx = pos.nonzero(as_tuple=True)
        if len(a_idx) == 0 or not bool(neg.any()):
            return zero
        d_ap = d[a_idx, p_idx]  # [M]
        d_a = d[a_idx]  # [M, B]
        neg_a = neg[a_idx]  # [M, B]
        farther = neg_a & (d_a > d_ap[:, None])
        closest_farther = d_a.masked_fill(~farther, float("inf")).amin(dim=1)
        farthest = d_a.masked_fill(~neg_a, float("-inf")).amax(dim=1)
        d_an = torch.where(farther.any(dim=1), closest_farther, farthest)
        has_neg = neg_a.any(dim=1)
        if not bool(has_neg.any()):
            return zero
        return F.relu(d_ap - d_an + margin)[has_neg].mean()
    raise ValueError(f"triplet_loss: mining must be 'semihard', 'hard' or 'all', got {mining!r}")


def batch_hard_loss(features: Tensor, labels: Tensor, margin: float) -> Tensor:
    """Batch-hard triplet loss with the plain Euclidean distance on unnormalised features, as
    the released CTL code computes it: per anchor, the farthest positive (the anchor itself
    counts, at distance ``1e-6``) and the closest negative; mean over all anchors of
    ``max(0, d_ap − d_an + margin)``. Anchors with no negative contribute 0."""
    d = euclidean_distances(features)
    same = labels[:, None] == labels[None, :]
    d_ap = d.masked_fill(~same, float("-inf")).amax(dim=1)
    d_an = d.masked_fill(same, float("inf")).amin(dim=1)
    has_neg = (~same).any(dim=1)
    terms = F.relu(d_ap - d_an + margin)
    return torch.where(has_neg, terms, torch.zeros_like(terms)).mean()


def centroid_triplet_loss(features: Tensor, labels: Tensor, margin: float = 0.3) -> Tensor:
    """Centroid Triplet Loss as the authors' released code computes it (module docstring).

    Args:
        features: raw (unnormalised) embeddings ``[B, D]``, ideally P identities × K images.
        labels: identity of each row ``[B]``.
        margin: the released configs' ``SOLVER.MARGIN`` (0.3).

    Returns:
        The mean over the slots with at least two classes; 0 (with a graph) when there is none.
    """
    _check(features, labels, "centroid_triplet_loss")
    dtype = torch.promote_types(features.dtype, torch.float32)
    x = features.to(dtype)
    classes, inverse = torch.unique(labels, sorted=False, return_inverse=True)
    n_cls = len(classes)
    # Rank of each sample within its class, in batch order.
    onehot = F.one_hot(inverse, n_cls)  # [B, C]
    rank = ((onehot.cumsum(dim=0) - 1) * onehot).sum(dim=1)  # [B]
    counts = onehot.sum(dim=0)  # [C]
    sums = onehot.t().to(dtype) @ x  # [C, D]
    slot_losses = []
    for i in range(int(counts.max().item()) if n_cls else 0):
        is_query = rank == i
        q_cls = inverse[is_query]
        keep = counts[q_cls] >= 2  # a centroid of the other samples exists
        if int(keep.sum()) < 2:
            continue
        q = x[is_query][keep]
        c = q_cls[keep]
        centroid = (sums[c] - q) / (counts[c] - 1).to(dtype)[:, None]
        pts = torch.cat([q, centroid])
        lab = torch.cat([c, c])
        slot_losses.append(batch_hard_loss(pts, lab, margin))
    if not slot_losses:
        return x.sum() * 0.0
    return torch.stack(slot_losses).mean()
