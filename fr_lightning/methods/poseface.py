"""PoseFace: landmark-based pose disentangling and a pose-adaptive loss (docs/methods.md, a reconstruction)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch.nn.functional as F
from torch import Tensor, nn

from fr_lightning.batch import FaceBatch, StepContext
from fr_lightning.functional.pose import (
    PoseHistogram,
    decorrelation_loss,
    normalize_landmarks,
    pose_margins,
    pose_weights,
    yaw_proxy,
)
from fr_lightning.methods.base import Method, register
from fr_lightning.utils.dist import all_reduce_sum

if TYPE_CHECKING:
    from fr_lightning.module import FaceRecognitionModule

#: Number of |yaw| bins of the EMA pose histogram.
POSE_BINS: int = 9


class PoseBranch(nn.Module):
    """PoseFace's trainable parts: pooled features -> MLP -> pose code ``p`` -> 10-d landmark regressor.

    Also holds the EMA pose histogram (buffers) so that it is checkpointed with the model.
    Either part may be absent when switched off.
    """

    def __init__(self, channels: int, code_dim: int, disentangle: bool, histogram: PoseHistogram | None) -> None:
        super().__init__()
        self.encoder: nn.Module | None = None
        self.regressor: nn.Module | None = None
        if disentangle:
            hidden = max(code_dim, channels)
            self.encoder = nn.Sequential(
                nn.Linear(channels, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True), nn.Linear(hidden, code_dim)
            )
            self.regressor = nn.Linear(code_dim, 10)
        self.histogram = histogram

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """Pose code ``[B, code_dim]`` and predicted normalised landmarks ``[B, 10]`` from a feature map."""
        if self.encoder is None or self.regressor is None:
            raise RuntimeError("PoseBranch was built with disentangle=False")
        pooled = F.adaptive_avg_pool2d(features, 1).flatten(1).float()
        code = self.encoder(pooled)
        return code, self.regressor(code)


@register
class PoseFace(Method):
    """PoseFace (reconstruction, docs/methods.md): split pose away from identity and up-weight rare poses.

    This is our reconstruction from the method description, not a port of released code.

    * **Disentangling** (``disentangle``): a pose branch in ``method_modules["poseface"]`` maps
      the backbone's pooled last-stage features (read through the module's forward hook) to a
      pose code ``p`` that regresses the normalised 10-value landmark vector (smooth-L1, term
      ``pose``). A decorrelation term (``decorrelation``) drives the cross-correlation between
      the batch-standardised identity embedding ``x`` (the backbone output, unchanged) and ``p``
      to zero. ``p`` is detached in that term (our choice): the branch is trained by pose
      regression only, so the term removes pose from ``x`` instead of pose from ``p``.
    * **Pose-adaptive loss** (``adaptive``): per-sample weights ``freq(bin(|yaw|))^(−γ)``
      normalised to batch mean 1, with ``freq`` an EMA histogram over 9 bins of the landmark
      yaw proxy (``weights``); or a pose-dependent margin ``m_i = m0 + Δm·|yaw_i|``
      (``margin``), where ``m0`` is the head's own margin and ``Δm·|yaw_i|`` is an extra
      additive cosine margin on the target class applied through :meth:`target_margins`.
      The histogram lives in the branch's buffers, so it is checkpointed and resumed.

    Pose comes from the 5 landmarks only (yaw proxy, normalised landmarks); a yaw label in the
    data is for evaluation only. Logged besides the loss terms: ``train/poseface/yaw_abs``
    (mean |yaw proxy|) and, with weights, ``train/poseface/weight_max``.

    Args:
        code_dim: dimension of the pose code ``p``.
        pose_weight: weight of the landmark-regression term ``pose``.
        decorrelation_weight: weight of the ``decorrelation`` term.
        gamma: exponent γ of the pose-adaptive weights.
        ema: EMA rate of the pose histogram.
        adaptive: ``weights`` (re-weight by pose rarity), ``margin`` (pose-dependent margin) or ``none``.
        margin_delta: Δm, the extra target margin per unit |yaw proxy| for ``adaptive: margin``.
        disentangle: build the pose branch and add the ``pose`` and ``decorrelation`` terms.
    """

    name = "poseface"
    order = 20

    def __init__(
        self,
        code_dim: int = 64,
        pose_weight: float = 1.0,
        decorrelation_weight: float = 1.0,
        gamma: float = 0.5,
        ema: float = 0.01,
        adaptive: Literal["weights", "margin", "none"] = "weights",
        margin_delta: float = 0.2,
        disentangle: bool = True,
    ) -> None:
        super().__init__()
        if adaptive not in ("weights", "margin", "none"):
            raise ValueError(f"PoseFace: adaptive must be 'weights', 'margin' or 'none', got {adaptive!r}")
        if code_dim < 1 or pose_weight < 0 or decorrelation_weight < 0 or gamma < 0 or not 0 < ema <= 1:
            raise ValueError("PoseFace: need code_dim >= 1, non-negative weights and gamma, and 0 < ema <= 1")
        self.code_dim = int(code_dim)
        self.pose_weight = float(pose_weight)
        self.decorrelation_weight = float(decorrelation_weight)
        self.gamma = float(gamma)
        self.ema = float(ema)
        self.adaptive = adaptive
        self.margin_delta = float(margin_delta)
        self.disentangle = bool(disentangle)

    def needs(self) -> frozenset[str]:
        """Landmarks; the feature map too when the pose branch is on."""
        return frozenset({"landmarks", "features"} if self.disentangle else {"landmarks"})

    # ------------------------------------------------------------------ helpers
    def _yaw(self, batch: FaceBatch) -> Tensor:
        return yaw_proxy(batch.require("landmarks", "PoseFace"))

    def build(self, module: "FaceRecognitionModule") -> nn.Module | None:
        """The pose branch (and/or the histogram); None when both parts are switched off."""
        histogram = PoseHistogram(POSE_BINS, self.ema) if self.adaptive == "weights" else None
        if not self.disentangle and histogram is None:
            return None
        channels = module.backbone.feature_info.channels if self.disentangle else 0
        return PoseBranch(channels, self.code_dim, self.disentangle, histogram)

    # -------------------------------------------------------------- Method hooks
    def target_margins(self, batch: FaceBatch, module: "FaceRecognitionModule") -> Tensor | None:
        """``Δm·|yaw_i|`` for ``adaptive: margin`` (added to the head's margin m0), else None."""
        if self.adaptive != "margin":
            return None
        return pose_margins(self._yaw(batch), 0.0, self.margin_delta).to(batch.images.device)

    def sample_weights(self, ctx: StepContext, module: "FaceRecognitionModule") -> Tensor | None:
        """Update the EMA histogram with this batch (all ranks) and return the rarity weights.

        Several views of one sample (``batch.views``) count once in the histogram.
        """
        batch = ctx.batch
        yaw = self._yaw(batch)
        module.log("train/poseface/yaw_abs", yaw.abs().mean(), batch_size=len(batch))
        if self.adaptive != "weights":
            return None
        hist: PoseHistogram = self.parts(module).histogram
        # Counts summed over ranks: every rank keeps the same histogram (buffers stay in sync).
        freq = hist.update_counts(all_reduce_sum(hist.counts(yaw[: batch.samples])))
        weights = pose_weights(yaw, freq, self.gamma)
        module.log("train/poseface/weight_max", weights.max(), batch_size=len(batch))
        return weights

    def loss_terms(self, ctx: StepContext, module: "FaceRecognitionModule") -> dict[str, Tensor]:
        """``pose`` (smooth-L1 landmark regression) and ``decorrelation`` (identity vs pose code)."""
        if not self.disentangle:
            return {}
        batch, out = ctx.batch, ctx.output
        landmarks = batch.require("landmarks", "PoseFace")
        if out.features is None:
            raise RuntimeError("PoseFace: the module did not keep the backbone's feature map (needs() lists \"features\")")
        code, pred = self.parts(module)(out.features)
        target = normalize_landmarks(landmarks).to(pred.device)
        pose = F.smooth_l1_loss(pred.float(), target)
        decor = decorrelation_loss(out.embeddings.float(), code.detach().float())
        return {"pose": self.pose_weight * pose, "decorrelation": self.decorrelation_weight * decor}
