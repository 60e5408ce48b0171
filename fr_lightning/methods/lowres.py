"""Multi-resolution training with the LogExp distance (low-resolution face recognition, docs/methods.md)."""

from __future__ import annotations

from dataclasses import fields
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import Tensor

from fr_lightning.batch import FaceBatch, StepContext
from fr_lightning.functional.lowres import degrade, logexp_distance, scale_sizes
from fr_lightning.methods.base import Method, register

if TYPE_CHECKING:
    from fr_lightning.module import FaceRecognitionModule


@register
class LowRes(Method):
    """Trains on a high- and a low-resolution view of every image, pulled together by LogExp.

    Each training batch of ``B`` images (the high-resolution view, already randomly mirrored by
    the data) gets a low-resolution copy: every image is degraded (anti-aliased bicubic down to
    ``r`` px, bicubic back up, clamped to the image range like a stored uint8 probe) with ``r``
    drawn per sample from ``sizes`` with ``probs``. The loss is the paper's

        ½·(CE(HR) + CE(LR)) + λ·LogExp(x_H, x_L)

    on raw (unnormalised) embeddings. Both views go through the backbone, classifier and head in
    *one* forward pass: :meth:`transform_batch` returns the ``2B`` batch ``[HR; LR]`` (every
    per-sample field repeated), so the module's one reducer averages the per-sample loss over
    both views — exactly ½·(CE(HR) + CE(LR)) — and no cross-entropy is computed here. (The
    reducer is a weighted *mean*, so scaling the HR loss by ½ through sample weights would
    cancel out; the joint batch is the exact way.) ``batch.hr_images`` holds the HR source of
    every row and ``batch.views`` doubles, so a KD teacher stacked after this method embeds the
    HR faces once and uses them for both views.

    Because of the ``2B`` batch this method runs first (``order = 10``): every method stacked
    with it sees both views in all its hooks. Logged besides ``train/loss/lowres/logexp``:
    ``train/lowres/frac@<r>`` (fraction of the batch drawn at tier ``r``),
    ``train/lowres/ce_hr`` and ``ce_lr`` (the two halves of ``train/loss/ce``) and
    ``train/lowres/gap`` (mean ‖x_H − x_L‖ / ‖x_H‖).

    Tiers are given at a 112-px reference (``sizes_relative_to``) and scaled to the training
    image size, so the CPU recipe at 56 px trains at 4, 7 and 10 px — the same fraction of the
    face as 7, 14 and 20 px at 112 px. :class:`fr_lightning.eval.lowres.LowResEvaluation` uses
    the same convention, so its ``@8`` means 8 px at 112 px at any training size.

    Args:
        sizes: resolution tiers in px at the ``sizes_relative_to`` reference (0 = full resolution).
        probs: probability of each tier (normalised).
        ce_lr_weight: relative weight ``w`` of the LR rows in the supervised loss, which becomes
            ``(CE(HR) + w·CE(LR)) / (1 + w)``; 1 is the paper's ½·(CE(HR) + CE(LR)), 0 keeps the
            classifier on HR only (the LR view then only enters through LogExp).
        logexp_weight: λ, the weight of the LogExp term (0 = multi-resolution augmentation only).
        logexp_mode: ``pair`` (the paper's per-pair formula) or ``batch`` (the released code's
            whole-batch form); see :func:`fr_lightning.functional.lowres.logexp_distance`.
        p: LogExp exponent on ``|x_H − x_L|``.
        sizes_relative_to: reference image size of ``sizes``; 0 = ``sizes`` are px of the
            training images as they are.
    """

    name = "lowres"
    order = 10

    def __init__(
        self,
        sizes: list[int] = [7, 14, 20],
        probs: list[float] = [0.5, 0.3, 0.2],
        ce_lr_weight: float = 1.0,
        logexp_weight: float = 1.0,
        logexp_mode: Literal["pair", "batch"] = "pair",
        p: float = 1.0,
        sizes_relative_to: int = 112,
    ) -> None:
        super().__init__()
        if len(sizes) != len(probs) or not sizes:
            raise ValueError(f"LowRes: sizes {list(sizes)} and probs {list(probs)} must be non-empty and of equal length")
        if any(s < 0 for s in sizes) or any(q < 0 for q in probs) or sum(probs) <= 0:
            raise ValueError("LowRes: sizes must be >= 0 and probs non-negative with a positive sum")
        if ce_lr_weight < 0 or logexp_weight < 0 or p <= 0:
            raise ValueError("LowRes: ce_lr_weight and logexp_weight must be >= 0 and p > 0")
        if logexp_mode not in ("pair", "batch"):
            raise ValueError(f"LowRes: logexp_mode must be 'pair' or 'batch', got {logexp_mode!r}")
        self.sizes = [int(s) for s in sizes]
        self.probs = [float(q) for q in probs]
        self.ce_lr_weight = float(ce_lr_weight)
        self.logexp_weight = float(logexp_weight)
        self.logexp_mode = logexp_mode
        self.p = float(p)
        self.sizes_relative_to = int(sizes_relative_to)
        self._generator: torch.Generator | None = None
        self._draws = 0

    # ------------------------------------------------------------------ helpers
    def tiers(self, image_size: int) -> list[int]:
        """The tiers in px of ``image_size`` images (0, "full", becomes ``image_size``)."""
        return [s or image_size for s in scale_sizes(self.sizes, image_size, self.sizes_relative_to)]

    def _rng(self, module: "FaceRecognitionModule") -> torch.Generator:
        # Tier draws are a pure function of (run seed, rank, step count): ranks draw different
        # tiers, and a resumed run (the count is in the checkpoint) continues the same sequence.
        if self._generator is None:
            self._generator = torch.Generator()
        key = np.random.SeedSequence([torch.initial_seed(), module.global_rank, self._draws, 0x10E5])
        seed = int(key.generate_state(1, dtype=np.uint64)[0]) % (2**63)
        self._generator.manual_seed(seed)
        self._draws += 1
        return self._generator

    @staticmethod
    def views(batch_size: int) -> tuple[slice, slice]:
        """Rows of the HR and the LR view in a batch this method produced (``2·batch_size`` rows)."""
        return slice(0, batch_size), slice(batch_size, 2 * batch_size)

    # -------------------------------------------------------------- Method hooks
    def transform_batch(self, batch: FaceBatch, module: "FaceRecognitionModule") -> FaceBatch:
        """Return ``[HR; LR]``: the batch followed by its degraded copy, side fields repeated."""
        hr = batch.images
        n, size = hr.shape[0], int(hr.shape[-2])
        tiers = self.tiers(size)
        lr, drawn = degrade(hr.detach(), tiers, self.probs, generator=self._rng(module))
        # Bicubic overshoot leaves [-1, 1]; stored (uint8) low-res probes cannot, so neither do these.
        lr = lr.clamp(-1.0, 1.0)
        for px in sorted(set(tiers)):
            label = "+".join(str(s) for s, t in zip(self.sizes, tiers) if t == px)
            frac = (drawn == px).float().mean().to(hr.device)
            module.log(f"train/lowres/frac@{label}", frac, batch_size=n)
        changes: dict[str, Any] = {}
        for f in fields(batch):
            value = getattr(batch, f.name)
            if isinstance(value, Tensor) and value.ndim > 0 and value.shape[0] == n:
                changes[f.name] = torch.cat([value, value])
        source = batch.hr_images if batch.hr_images is not None else hr
        changes["hr_images"] = torch.cat([source, source])
        changes["images"] = torch.cat([hr, lr.to(hr.dtype)])
        changes["views"] = 2 * batch.views
        return batch.replace(**changes)

    def sample_weights(self, ctx: StepContext, module: "FaceRecognitionModule") -> Tensor | None:
        """Weight ``ce_lr_weight`` on the LR rows (None, i.e. all ones, for the paper's 1)."""
        out = ctx.output
        n = len(ctx.batch) // 2
        hr_rows, lr_rows = self.views(n)
        with torch.no_grad():
            loss, valid = out.per_sample_loss.detach().float(), out.labels >= 0
            for name, rows in (("ce_hr", hr_rows), ("ce_lr", lr_rows)):
                v = valid[rows]
                value = loss[rows][v].mean() if v.any() else loss.new_zeros(())
                module.log(f"train/lowres/{name}", value, batch_size=n)
        if self.ce_lr_weight == 1.0:
            return None
        weights = torch.ones(2 * n, device=out.per_sample_loss.device)
        weights[lr_rows] = self.ce_lr_weight
        return weights

    def loss_terms(self, ctx: StepContext, module: "FaceRecognitionModule") -> dict[str, Tensor]:
        """``logexp``: λ·LogExp(x_H, x_L) on the raw embeddings of the two views."""
        out = ctx.output
        n = len(ctx.batch) // 2
        hr_rows, lr_rows = self.views(n)
        x_h, x_l = out.embeddings[hr_rows].float(), out.embeddings[lr_rows].float()
        with torch.no_grad():
            gap = ((x_h - x_l).norm(dim=1) / x_h.norm(dim=1).clamp_min(1e-6)).mean()
            module.log("train/lowres/gap", gap, batch_size=n)
        if self.logexp_weight == 0.0:
            return {}
        return {"logexp": self.logexp_weight * logexp_distance(x_h, x_l, p=self.p, mode=self.logexp_mode)}

    # ---------------------------------------------------------- checkpointing
    def state_dict(self) -> dict[str, Any]:
        """How many batches were degraded (the tier draws continue from there on resume)."""
        return {"draws": self._draws}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._draws = int(state_dict.get("draws", 0))
