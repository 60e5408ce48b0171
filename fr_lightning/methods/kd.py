"""KD: knowledge distillation from a frozen teacher: feature, ND and calibrated logit terms (docs/methods.md)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Literal

import lightning.pytorch as pl
import torch
from torch import Tensor, nn

from fr_lightning.batch import FaceBatch, StepContext
from fr_lightning.functional.kd import (
    calibrate_reorder,
    calibrate_translate,
    feature_loss,
    logit_kd,
    nd_loss,
    teacher_class_means,
)
from fr_lightning.methods.base import Method, register
from fr_lightning.methods.teacher import Teacher, load_teacher
from fr_lightning.utils.rundir import run_dir

if TYPE_CHECKING:
    from fr_lightning.module import FaceRecognitionModule

#: Name of the class-means cache written beside the run.
CACHE_NAME = "kd_class_means.pt"


@register
class KD(Method):
    """Knowledge distillation: teaches the student (the module's backbone) from a frozen teacher network.

    The teacher is loaded lazily at setup from ``teacher`` (see
    :func:`fr_lightning.methods.teacher.load_teacher`), frozen, kept on this callback (never in
    the student's ``state_dict``), moved to the module's device at fit start and run inside the
    training step, so under the same autocast. It sees ``batch.hr_images`` when a method stacked
    before it (:class:`~fr_lightning.methods.LowRes`) set them: HR teacher, LR student. When the
    batch holds several views of the same samples (``batch.views``), the teacher embeds each
    sample once and its embedding serves every view.

    Loss terms (logged as ``train/loss/kd/<term>``):

    * ``feature``: ``1 − cos(P·x_s, x_t)`` (or MSE of the normalised embeddings), where ``P`` is a
      Linear(d_s→d_t) projector registered in ``method_modules`` when the dims differ;
    * ``nd``: normalised distillation of the raw student embedding (projected when dims differ)
      towards the teacher's normalised class centre ``ê_y``. Centres come from the teacher
      classifier when it shares the student's identities, else from one teacher pass over the
      training set at fit start, cached as ``<run dir>/kd_class_means.pt`` and reused on resume;
    * ``logit``: ``T²·KL`` between teacher and student margin-free scaled cosines (scale = the
      head's ``s``) over the shared identities, after calibrating wrong teacher predictions,
      with the weight ramped linearly over the first ``logit_warmup_epochs`` epochs.

    Args:
        teacher: path of the teacher: a ``.ckpt`` of ``fr fit`` or an insightface ``backbone.pth``.
        teacher_backbone: the teacher's architecture (class_path/init_args), weights loaded strictly.
        feature_weight: weight of the feature term (0 = off).
        feature_kind: ``cosine`` (1 − cos) or ``mse`` (on L2-normalised embeddings).
        nd_weight: weight of the ND term (0 = off).
        logit_weight: weight of the logit term after warm-up (0 = off); needs a teacher classifier
            over the same identities.
        temperature: softmax temperature T of the logit term.
        calibration: how wrong teacher predictions are fixed: ``none``, ``translate`` or ``reorder``.
        delta: margin δ of ``translate``.
        logit_warmup_epochs: epochs over which the logit weight ramps from 0 (0 = no ramp).
        projector: allow a Linear projector when student and teacher dims differ (else an error).
        class_means_cache: keep the teacher class means on disk beside the run and reuse them.
    """

    name = "kd"
    order = 40

    def __init__(
        self,
        teacher: str = "",
        teacher_backbone: nn.Module | None = None,
        feature_weight: float = 1.0,
        feature_kind: Literal["cosine", "mse"] = "cosine",
        nd_weight: float = 0.0,
        logit_weight: float = 0.0,
        temperature: float = 4.0,
        calibration: Literal["none", "translate", "reorder"] = "translate",
        delta: float = 1.0,
        logit_warmup_epochs: float = 1.0,
        projector: bool = True,
        class_means_cache: bool = True,
    ) -> None:
        super().__init__()
        if min(feature_weight, nd_weight, logit_weight) < 0 or temperature <= 0 or logit_warmup_epochs < 0:
            raise ValueError("KD: weights and logit_warmup_epochs must be >= 0 and temperature > 0")
        if feature_kind not in ("cosine", "mse"):
            raise ValueError(f"KD: feature_kind must be 'cosine' or 'mse', got {feature_kind!r}")
        if calibration not in ("none", "translate", "reorder"):
            raise ValueError(f"KD: calibration must be 'none', 'translate' or 'reorder', got {calibration!r}")
        self.teacher_path = teacher
        self.teacher_backbone = teacher_backbone
        self.feature_weight = float(feature_weight)
        self.feature_kind = feature_kind
        self.nd_weight = float(nd_weight)
        self.logit_weight = float(logit_weight)
        self.temperature = float(temperature)
        self.calibration = calibration
        self.delta = float(delta)
        self.logit_warmup_epochs = float(logit_warmup_epochs)
        self.projector = projector
        self.class_means_cache = class_means_cache
        self._teacher: Teacher | None = None
        self._class_means: Tensor | None = None

    def needs(self) -> frozenset[str]:
        """A teacher, and logits over every class for the logit term."""
        return frozenset({"teacher", "full_logits"} if self.logit_weight > 0 else {"teacher"})

    # ---------------------------------------------------------------- teacher
    @property
    def teacher(self) -> Teacher:
        """The frozen teacher (loaded on first use)."""
        if self._teacher is None:
            if not self.teacher_path:
                raise ValueError(
                    "method kd needs teacher: a frozen teacher network; set its checkpoint as teacher (e.g. "
                    "--trainer.callbacks.init_args.teacher=runs/<run>/checkpoints/last.ckpt)"
                )
            self._teacher = load_teacher(self.teacher_path, self.teacher_backbone)
        return self._teacher

    def _shares_identities(self, num_classes: int) -> bool:
        centres = self.teacher.centres
        if centres is None:
            return False
        rows = centres.shape[0]
        return rows >= num_classes and rows % num_classes == 0 and rows // num_classes <= 16

    # ------------------------------------------------------------ Method hooks
    def build(self, module: "FaceRecognitionModule") -> nn.Module | None:
        """Load the teacher, check the terms can run, return the projector when dims differ."""
        d_s, d_t = int(module.backbone.embedding_dim), self.teacher.embedding_dim
        if self.logit_weight > 0 and not self._shares_identities(module.num_classes):
            have = "no classifier" if self.teacher.centres is None else f"a classifier of {self.teacher.centres.shape[0]} rows"
            raise ValueError(
                f"KD: logit_weight > 0 needs a teacher classifier over the student's "
                f"{module.num_classes} identities, but teacher {self.teacher.path} has {have}; set logit_weight: 0"
            )
        if d_s == d_t:
            return None
        if not self.projector:
            raise ValueError(
                f"KD: student embedding_dim {d_s} differs from teacher {self.teacher.path}'s {d_t}; "
                "set projector: true (a Linear d_s->d_t) or use a student with the teacher's embedding size"
            )
        return nn.Linear(d_s, d_t)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Move the teacher to the module's device; get the ND class means when ND is on."""
        self.teacher.to(pl_module.device)
        if self.nd_weight > 0:
            self._class_means = self._get_class_means(trainer, pl_module)

    def _get_class_means(self, trainer: pl.Trainer, module: pl.LightningModule) -> Tensor:
        num_classes = int(module.num_classes)
        if self._shares_identities(num_classes):
            return self.teacher.class_means(num_classes)
        cache = run_dir(trainer) / CACHE_NAME
        if self.class_means_cache and cache.is_file():
            saved = torch.load(cache, map_location="cpu", weights_only=True)
            means = saved.get("means") if isinstance(saved, dict) else None
            if isinstance(means, Tensor) and tuple(means.shape) == (num_classes, self.teacher.embedding_dim):
                return means.to(module.device)
        means = self._teacher_pass(trainer, module, num_classes)
        if self.class_means_cache and trainer.is_global_zero:
            cache.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"means": means.cpu(), "teacher": str(self.teacher.path)}, cache)
        return means

    def _teacher_pass(self, trainer: pl.Trainer, module: pl.LightningModule, num_classes: int) -> Tensor:
        """One teacher pass over the training set (every rank sees the whole set: same result everywhere)."""
        datamodule = trainer.datamodule
        if datamodule is None or not hasattr(datamodule, "train_dataloader"):
            raise ValueError("KD: ND without a teacher classifier needs a data module to compute class means")
        device = module.device

        def batches() -> Any:
            for batch in datamodule.train_dataloader():
                images = batch.images if isinstance(batch, FaceBatch) else batch["images"]
                labels = batch.labels if isinstance(batch, FaceBatch) else batch["labels"]
                with trainer.precision_plugin.forward_context():
                    emb = self.teacher.embed(images.to(device))
                yield emb, labels.to(device)

        return teacher_class_means(batches(), num_classes)

    def _progress(self, module: "FaceRecognitionModule") -> float:
        """Epochs done so far (fractional); inf without a trainer (no ramp)."""
        trainer = getattr(module, "_trainer", None)
        if trainer is None:
            return math.inf
        per_epoch = trainer.num_training_batches
        if not math.isfinite(per_epoch) or per_epoch <= 0:
            return float(trainer.current_epoch)
        return trainer.global_step / per_epoch

    def teacher_embeddings(self, batch: FaceBatch) -> Tensor:
        """Teacher embeddings ``[B, D_t]`` of the batch's HR images, each sample embedded once across views."""
        teacher = self.teacher
        images = batch.hr_images if batch.hr_images is not None else batch.images
        if teacher.device != images.device:
            teacher.to(images.device)
        n = batch.samples
        # Views of one sample share its HR source: embed the first view's rows and repeat.
        x_t = teacher.embed(images[:n] if batch.views > 1 else images).float()
        return x_t.repeat(batch.views, 1) if batch.views > 1 else x_t

    def loss_terms(self, ctx: StepContext, module: "FaceRecognitionModule") -> dict[str, Tensor]:
        """``feature``, ``nd`` and ``logit`` terms (only those with a positive weight)."""
        batch, out = ctx.batch, ctx.output
        teacher = self.teacher
        x_t = self.teacher_embeddings(batch)
        x_s = out.embeddings
        proj = module.method_modules[self.name] if self.name in module.method_modules else None
        x_p = proj(x_s) if proj is not None else x_s
        terms: dict[str, Tensor] = {}
        if self.feature_weight > 0:
            terms["feature"] = self.feature_weight * feature_loss(x_p, x_t, self.feature_kind)
        if self.nd_weight > 0:
            if self._class_means is None:
                self._class_means = teacher.class_means(module.num_classes) if self._shares_identities(module.num_classes) else None
            if self._class_means is None:
                raise ValueError("KD: ND class means are computed at fit start; run it through a Trainer")
            terms["nd"] = self.nd_weight * nd_loss(x_p, x_t, batch.labels, self._class_means.to(x_p.device))
        if self.logit_weight > 0:
            terms["logit"] = self._logit_term(ctx, module, x_t)
        return terms

    def _logit_term(self, ctx: StepContext, module: "FaceRecognitionModule", x_t: Tensor) -> Tensor:
        batch, out = ctx.batch, ctx.output
        num_classes = module.num_classes
        cos_s = out.cosine.float()
        k = int(module.classifier.subcenters)
        if cos_s.shape[1] != num_classes * k:
            raise ValueError(
                f"KD: logit distillation needs cosines over all {num_classes} classes, got "
                f"{cos_s.shape[1]} (a sampled/sharded classifier such as PartialFC); set logit_weight: 0"
            )
        if k > 1:
            cos_s = cos_s.view(cos_s.shape[0], num_classes, k).amax(dim=2)
        scale = module.criterion.scale
        z_s, z_t = scale * cos_s, scale * self.teacher.cosine(x_t, num_classes)
        if self.calibration == "translate":
            z_t = calibrate_translate(z_t, batch.labels, self.delta)
        elif self.calibration == "reorder":
            z_t = calibrate_reorder(z_t, batch.labels)
        ramp = 1.0 if self.logit_warmup_epochs == 0 else min(1.0, self._progress(module) / self.logit_warmup_epochs)
        return self.logit_weight * ramp * logit_kd(z_s, z_t, self.temperature)


__all__ = ["CACHE_NAME", "KD"]
