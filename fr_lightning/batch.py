"""What flows through a training step: the batch, one forward pass's output and the per-step context."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor


@dataclass
class FaceBatch:
    """A training batch with the optional side information some methods need.

    Attributes:
        images: float images ``[B, 3, H, W]``, normalised ``(x/255 - 0.5)/0.5``.
        labels: identity labels ``[B]`` (int64), possibly noisy.
        landmarks: 5-point landmarks ``[B, 5, 2]`` in pixels of ``images`` (PoseFace).
        pose: ``[B, 3]`` yaw, pitch, roll in degrees (diagnostics / evaluation only).
        group: demographic group ``[B]`` (GABN, fairness evaluation).
        hr_images: the high-resolution view when a method builds a low-resolution one.
        clean_labels: true labels when noise was injected (diagnostics only, never a loss).
        index: dataset index of each sample ``[B]``.
        views: the batch is ``views`` stacked copies (views) of the same ``len(batch) // views``
            samples, row ``i`` of view ``v`` at ``v * n + i`` (a method that adds views, such as
            low-resolution training, multiplies it; 1 = plain batch).
    """

    images: Tensor
    labels: Tensor
    landmarks: Tensor | None = None
    pose: Tensor | None = None
    group: Tensor | None = None
    hr_images: Tensor | None = None
    clean_labels: Tensor | None = None
    index: Tensor | None = None
    views: int = 1

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def replace(self, **changes: Any) -> "FaceBatch":
        """Return a copy with some fields replaced (methods never edit a batch in place)."""
        return replace(self, **changes)

    def to(self, device: torch.device | str) -> "FaceBatch":
        """Move every tensor field to ``device``."""
        moved = {
            f.name: (v.to(device) if isinstance(v := getattr(self, f.name), Tensor) else v) for f in fields(self)
        }
        return FaceBatch(**moved)

    @property
    def samples(self) -> int:
        """Distinct samples in the batch (``len(batch) // views``)."""
        return len(self) // self.views

    def require(self, name: str, who: str) -> Tensor:
        """Return field ``name`` or raise a clear error saying which method needs it."""
        value = getattr(self, name)
        if value is None:
            raise ValueError(
                f"{who} needs `{name}` in the training batch, but the data source provides none. "
                f"Use a data source that carries {name} (the synthetic source does, real data needs a side file)."
            )
        return value


@dataclass
class StepOutput:
    """What one forward pass (backbone -> classifier -> head) produced, handed to the method hooks.

    Attributes:
        embeddings: raw (unnormalised) backbone output ``[B, D]``.
        cosine: classifier cosines ``[B', C']`` (``B'`` = every rank's rows under a sharded classifier).
        labels: labels as the classifier returned them (``-1`` = no positive in this shard).
        logits: scaled logits from the head (margin-free ``s·cos`` in scoring mode).
        per_sample_loss: supervised loss per sample ``[B']`` before weighting.
        features: the backbone's last-stage feature map, when a method asked for it.
        class_index: the classes a sampled classifier (PartialFC) scored in this pass (None = all);
            another pass given it scores the same columns.
    """

    embeddings: Tensor
    cosine: Tensor
    labels: Tensor
    logits: Tensor
    per_sample_loss: Tensor
    features: Tensor | None = None
    class_index: Tensor | None = None


@dataclass
class StepContext:
    """One training step as the stacked methods see it; built by the module, passed to every hook.

    Values one hook hands to a later one (the selection mask, the sampled classes) live here for
    the step, never on the method object.

    Attributes:
        batch: the batch after every method's ``transform_batch``.
        target_margin: per-sample extra target margin ``[B]`` summed over methods (None = none).
        out: the training forward pass (set before ``sample_weights``).
        weights: the product of every method's sample weights (set before ``loss_terms``; None = uniform).
        extras: free-form per-step values keyed ``"<method>/<name>"`` (diagnostics a later hook reads).
    """

    batch: FaceBatch
    target_margin: Tensor | None = None
    out: StepOutput | None = None
    weights: Tensor | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def output(self) -> StepOutput:
        """The training forward pass (raises before it exists)."""
        if self.out is None:
            raise RuntimeError("StepContext.out is read before the forward pass (only sample_weights/loss_terms see it)")
        return self.out


def collate_faces(samples: list[dict[str, Any]]) -> FaceBatch:
    """Collate dict samples (tensor or number values) into a :class:`FaceBatch`."""
    keys = samples[0].keys()
    out: dict[str, Tensor] = {}
    for key in keys:
        values = [s[key] for s in samples]
        if isinstance(values[0], Tensor):
            out[key] = torch.stack(values)
        elif isinstance(values[0], np.ndarray):
            out[key] = torch.from_numpy(np.stack(values))
        else:
            out[key] = torch.as_tensor(values)
    return FaceBatch(**out)
