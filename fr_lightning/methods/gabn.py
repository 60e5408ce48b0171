"""GABN: gradient-attention balance between demographic groups (docs/methods.md, a reconstruction)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn

from fr_lightning.batch import StepContext
from fr_lightning.functional.gabn import (
    attention_area,
    erase_cells,
    grad_reverse,
    gradient_attention_map,
    top_cells,
    warmup_factor,
)
from fr_lightning.functional.reduce import reduce_loss
from fr_lightning.methods.base import Method, register

if TYPE_CHECKING:
    from fr_lightning.module import FaceRecognitionModule

#: Warm-up length when an epoch has no known length (an iterable data set).
FALLBACK_WARMUP_STEPS: int = 1000


class GroupDiscriminator(nn.Module):
    """Small MLP that predicts the demographic group from a flattened attention map."""

    def __init__(self, cells: int, num_groups: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(cells, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, num_groups))

    def forward(self, gam: Tensor) -> Tensor:
        """Group logits ``[B, num_groups]`` of maps ``[B, h, w]``; the scale ``h·w`` makes a uniform map all ones."""
        return self.net(gam.flatten(1) * gam.shape[1] * gam.shape[2])


@register
class GABN(Method):
    """GABN (reconstruction, docs/methods.md): make where the network looks independent of the group.

    This is our reconstruction from the method description, not a port of released code.

    Each step the gradient attention map (GAM, Grad-CAM on the backbone's last stage w.r.t. the
    target logit ``s·cos θ_y``; ``s`` cancels in the normalisation) is computed for every sample:

    * **adversarial balance** (``adversarial``): a discriminator in ``method_modules["gabn"]``
      predicts the group from the GAM through a gradient-reversal layer of strength
      ``λ_adv·ramp`` (linear warm-up); the discriminator learns to tell groups apart, the
      backbone learns maps it cannot. The GAM is built with ``create_graph=True`` so the
      reversed gradient reaches the backbone (double backward). Term ``adversarial``
      (the discriminator's cross-entropy times ``adversarial_weight``).
    * **top-N erasing** (``erase``): after the warm-up, a random fraction ``erase_fraction`` of
      the batch has its ``top_n`` most attended cells erased (mask computed without gradient) and
      is classified again (a training-mode pass with the stacked methods' target margins); term
      ``erased_ce`` (mean loss of those samples times ``erase_weight``).

    Logged: ``train/gabn/disc_acc`` (tends to chance ``1/num_groups`` when maps are balanced),
    ``train/gabn/area_g<k>`` (mean fraction of cells above the uniform level for group ``k``),
    ``train/gabn/lambda``. Needs ``group`` in the batch (synthetic data has it; real data needs a
    group side file). Works with FullFC and single-device PartialFC, not with centres sharded
    across ranks (the target logit of a local sample may live on another rank).

    Args:
        num_groups: number of demographic groups.
        adversarial: switch the adversarial part on.
        lambda_adv: gradient-reversal strength after the warm-up.
        adversarial_weight: weight of the discriminator's loss term.
        hidden: discriminator hidden width.
        erase: switch top-N erasing on.
        top_n: cells erased per selected image.
        erase_fraction: fraction of the batch erased after the warm-up.
        erase_weight: weight of the ``erased_ce`` term.
        fill: ``zero`` or ``mean`` fill of erased patches.
        warmup: warm-up length in optimizer steps; None = one epoch.
    """

    name = "gabn"
    order = 50

    def __init__(
        self,
        num_groups: int = 4,
        adversarial: bool = True,
        lambda_adv: float = 0.1,
        adversarial_weight: float = 1.0,
        hidden: int = 64,
        erase: bool = True,
        top_n: int = 2,
        erase_fraction: float = 0.5,
        erase_weight: float = 1.0,
        fill: Literal["zero", "mean"] = "zero",
        warmup: int | None = None,
    ) -> None:
        super().__init__()
        if num_groups < 2 or hidden < 1 or top_n < 1:
            raise ValueError("GABN: need num_groups >= 2, hidden >= 1 and top_n >= 1")
        if not 0.0 <= erase_fraction <= 1.0 or lambda_adv < 0 or adversarial_weight < 0 or erase_weight < 0:
            raise ValueError("GABN: need 0 <= erase_fraction <= 1 and non-negative lambda_adv and weights")
        if fill not in ("zero", "mean"):
            raise ValueError(f"GABN: fill must be 'zero' or 'mean', got {fill!r}")
        if warmup is not None and warmup < 0:
            raise ValueError(f"GABN: warmup must be >= 0 steps or None (one epoch), got {warmup}")
        if not adversarial and not erase:
            raise ValueError("GABN: both parts are switched off (adversarial: false, erase: false); remove the method instead")
        self.num_groups = int(num_groups)
        self.adversarial = bool(adversarial)
        self.lambda_adv = float(lambda_adv)
        self.adversarial_weight = float(adversarial_weight)
        self.hidden = int(hidden)
        self.erase = bool(erase)
        self.top_n = int(top_n)
        self.erase_fraction = float(erase_fraction)
        self.erase_weight = float(erase_weight)
        self.fill = fill
        self.warmup = warmup
        self._warmup_steps = warmup if warmup is not None else FALLBACK_WARMUP_STEPS

    def needs(self) -> frozenset[str]:
        """The feature map (attention maps), group labels, and each sample's target logit on its own rank."""
        return frozenset({"features", "group", "local_logits"})

    # ------------------------------------------------------------------ setup
    def build(self, module: "FaceRecognitionModule") -> nn.Module | None:
        """The group discriminator (sized from the feature map), or None without the adversarial part."""
        if not self.adversarial:
            return None
        _, h, w = module.backbone.feature_shape()  # the feature map's shape at input_size, without a pass
        return GroupDiscriminator(h * w, self.num_groups, self.hidden)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.warmup is not None:
            return
        per_epoch = trainer.estimated_stepping_batches / max(1, trainer.max_epochs or 1)
        if math.isfinite(per_epoch) and per_epoch > 0:
            self._warmup_steps = int(per_epoch)
        else:
            rank_zero_info(f"GABN: epoch length unknown; warming up over {FALLBACK_WARMUP_STEPS} steps")
            self._warmup_steps = FALLBACK_WARMUP_STEPS

    def ramp(self, step: int) -> float:
        """Warm-up factor in [0, 1] at optimizer step ``step``."""
        return warmup_factor(step, self._warmup_steps)

    # -------------------------------------------------------------- Method hooks
    def loss_terms(self, ctx: StepContext, module: "FaceRecognitionModule") -> dict[str, Tensor]:
        """``adversarial`` and ``erased_ce`` (each only when its part is on and active)."""
        batch, out = ctx.batch, ctx.output
        group = batch.require("group", "GABN").to(out.embeddings.device).long()
        if out.features is None or out.cosine.shape[0] != len(batch):
            # needs() is checked at setup; this guards direct calls outside a trainer.
            raise RuntimeError("GABN needs the feature map and each sample's logits on its own rank (see needs())")
        if int(group.max()) >= self.num_groups or int(group.min()) < 0:
            raise ValueError(f"GABN: group labels must be in 0..{self.num_groups - 1} (num_groups), got {group.unique().tolist()}")
        step = module.trainer.global_step if module._trainer is not None else 0
        ramp = self.ramp(step)
        bsz = len(batch)
        valid = out.labels >= 0
        score = out.cosine.gather(1, out.labels.clamp_min(0)[:, None]).squeeze(1) * valid
        gam = gradient_attention_map(out.features, score.float(), create_graph=self.adversarial)
        terms: dict[str, Tensor] = {}
        if self.adversarial:
            disc = self.parts(module)
            logits = disc(grad_reverse(gam, self.lambda_adv * ramp))
            terms["adversarial"] = self.adversarial_weight * F.cross_entropy(logits.float(), group)
            module.log("train/gabn/disc_acc", (logits.argmax(1) == group).float().mean(), batch_size=bsz)
            module.log("train/gabn/lambda", self.lambda_adv * ramp, batch_size=bsz)
        area = attention_area(gam)
        for g in group.unique().tolist():
            module.log(f"train/gabn/area_g{g}", area[group == g].mean(), batch_size=int((group == g).sum()))
        if self.erase:
            active = ramp >= 1.0
            k = int(self.erase_fraction * bsz) if active else 0
            if k > 0:
                chosen = torch.randperm(bsz, device=group.device)[:k]
                erased = erase_cells(batch.images[chosen], top_cells(gam[chosen], self.top_n), self.fill)
                margin = None if ctx.target_margin is None else ctx.target_margin[chosen]
                again = module.forward_train(erased, batch.labels[chosen], margin)
                terms["erased_ce"] = self.erase_weight * reduce_loss(again.per_sample_loss, valid=batch.labels[chosen] >= 0)
            else:  # an exact zero keeps the logged keys stable from the first step
                terms["erased_ce"] = out.per_sample_loss.sum() * 0.0
        return terms
