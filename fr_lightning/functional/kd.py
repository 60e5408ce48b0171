"""Knowledge-distillation losses and teacher-logit calibration (docs/methods.md, "Knowledge distillation"). No Lightning inside."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor


def feature_loss(x_s: Tensor, x_t: Tensor, kind: Literal["cosine", "mse"] = "cosine") -> Tensor:
    """Mean feature distillation loss between student and teacher embeddings ``[B, D]``.

    ``cosine``: ``1 − cos(x_s, x_t)``; ``mse``: squared error of the L2-normalised embeddings
    summed over dimensions (``= 2 − 2·cos``, i.e. twice the cosine form, kept for parity with
    papers that state it this way). Computed in float32 at least.
    """
    if x_s.shape != x_t.shape:
        raise ValueError(f"feature_loss: student {tuple(x_s.shape)} and teacher {tuple(x_t.shape)} shapes differ")
    dtype = torch.promote_types(x_s.dtype, torch.float32)
    s, t = F.normalize(x_s.to(dtype), dim=1), F.normalize(x_t.to(dtype), dim=1)
    if kind == "cosine":
        return (1.0 - (s * t).sum(dim=1)).mean()
    if kind == "mse":
        return (s - t).pow(2).sum(dim=1).mean()
    raise ValueError(f"feature_loss: kind must be 'cosine' or 'mse', got {kind!r}")


def nd_loss(x_s: Tensor, x_t: Tensor, labels: Tensor, class_means: Tensor) -> Tensor:
    """Normalised distillation: ``(1/B)·Σ_i [1 − ⟨x_s,i, ê_{y_i}⟩ / max(‖x_s,i‖, ‖x_t,i‖)]``.

    Args:
        x_s: raw (unnormalised) student embeddings ``[B, D]``.
        x_t: raw teacher embeddings ``[B, D]`` (only their norms enter).
        labels: class of each row ``[B]``; rows with ``-1`` are ignored.
        class_means: teacher class centres ``[C, D]``; normalised here (so raw means work too).
    """
    dtype = torch.promote_types(x_s.dtype, torch.float32)
    valid = labels >= 0
    if not bool(valid.any()):
        return x_s.sum() * 0.0
    xs, xt, y = x_s[valid].to(dtype), x_t[valid].to(dtype), labels[valid]
    e = F.normalize(class_means.to(device=xs.device, dtype=dtype), dim=1)[y]
    denom = torch.maximum(xs.norm(dim=1), xt.norm(dim=1)).clamp_min(1e-12)
    return (1.0 - (xs * e).sum(dim=1) / denom).mean()


def logit_kd(z_s: Tensor, z_t: Tensor, temperature: float = 4.0) -> Tensor:
    """``T²·KL(softmax(z_t/T) ‖ softmax(z_s/T))`` averaged over the batch (Hinton et al.)."""
    if temperature <= 0:
        raise ValueError(f"logit_kd: temperature must be > 0, got {temperature}")
    dtype = torch.promote_types(z_s.dtype, torch.float32)
    log_p_s = F.log_softmax(z_s.to(dtype) / temperature, dim=1)
    log_p_t = F.log_softmax(z_t.to(dtype) / temperature, dim=1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=1)
    return temperature**2 * kl.mean()


def calibrate_translate(z_t: Tensor, labels: Tensor, delta: float = 1.0) -> Tensor:
    """Where the teacher is wrong (``argmax z_t ≠ y``) set ``z_t[y] ← max_j z_t[j] + δ`` (out of place).

    Rows with label ``-1`` are left unchanged.
    """
    out = z_t.clone()
    y = labels.clamp_min(0).unsqueeze(1)
    top = z_t.max(dim=1, keepdim=True).values
    wrong = (z_t.argmax(dim=1) != labels) & (labels >= 0)
    new = torch.where(wrong.unsqueeze(1), top + delta, z_t.gather(1, y))
    return out.scatter(1, y, new)


def calibrate_reorder(z_t: Tensor, labels: Tensor) -> Tensor:
    """Permute each row's values so class ``y`` holds the top value and the others keep their order.

    The multiset of values (hence the entropy of the teacher distribution) is unchanged; a row
    whose teacher is already right is returned as it is. Rows with label ``-1`` are unchanged.
    """
    values, order = torch.sort(z_t, dim=1, descending=True, stable=True)
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(z_t.shape[1], device=z_t.device).expand_as(order))
    valid = labels >= 0
    y = labels.clamp_min(0).unsqueeze(1)
    # Moving y to rank -1 and re-sorting gives the new order: y first, the others as before.
    key = rank.scatter(1, y, torch.where(valid.unsqueeze(1), torch.full_like(y, -1), rank.gather(1, y)))
    new_order = torch.argsort(key, dim=1, stable=True)
    return torch.empty_like(z_t).scatter(1, new_order, values)


def class_sums(batches: Iterable[tuple[Tensor, Tensor]], num_classes: int) -> Tensor:
    """Per-class sums ``[C, D]`` (float32) of raw embeddings from ``(embeddings, labels)`` pairs.

    Rows labelled ``-1`` are skipped. Sums (not means) so ranks can all-reduce them before normalising.
    """
    sums: Tensor | None = None
    for emb, labels in batches:
        emb = emb.detach().float()
        if sums is None:
            sums = emb.new_zeros(num_classes, emb.shape[1])
        valid = labels.to(emb.device) >= 0
        sums.index_add_(0, labels.to(emb.device)[valid], emb[valid])
    if sums is None:
        raise ValueError("class_sums: no batches")
    return sums


def teacher_class_means(batches: Iterable[tuple[Tensor, Tensor]], num_classes: int) -> Tensor:
    """Normalised class means ``[C, D]`` of teacher embeddings from ``(embeddings, labels)`` pairs.

    Each centre is the mean of the class's raw teacher embeddings, L2-normalised (the mean and the
    sum have the same direction); a class without samples stays a zero vector.
    """
    return F.normalize(class_sums(batches, num_classes), dim=1)
