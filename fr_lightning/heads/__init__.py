"""Margin heads: turn cosines ``[B, C]`` into scaled logits (or a per-sample loss for SFace).

Every head follows :class:`MarginHead`'s contract. ``HEADS`` maps a short name (the file
and ``configs/heads/<name>.yaml`` name) to each class; tests are generated from it.
"""

from __future__ import annotations

from fr_lightning.heads.adaface import AdaFace
from fr_lightning.heads.adasin import AdaSin
from fr_lightning.heads.arcface import ArcFace
from fr_lightning.heads.base import MarginHead
from fr_lightning.heads.combined import CombinedMargin
from fr_lightning.heads.cosface import CosFace
from fr_lightning.heads.curricularface import CurricularFace
from fr_lightning.heads.magface import MagFace
from fr_lightning.heads.mvsoftmax import MVSoftmax
from fr_lightning.heads.normface import NormFace
from fr_lightning.heads.sface import SFace
from fr_lightning.heads.sphereface import SphereFace
from fr_lightning.heads.subcenter import SubCenterArcFace
from fr_lightning.heads.unpg import UNPG
from fr_lightning.heads.x2softmax import X2Softmax

HEADS: dict[str, type[MarginHead]] = {
    "normface": NormFace,
    "cosface": CosFace,
    "arcface": ArcFace,
    "combined": CombinedMargin,
    "sphereface": SphereFace,
    "curricularface": CurricularFace,
    "adaface": AdaFace,
    "magface": MagFace,
    "subcenter": SubCenterArcFace,
    "mvsoftmax": MVSoftmax,
    "x2softmax": X2Softmax,
    "sface": SFace,
    "adasin": AdaSin,
    "unpg": UNPG,
}

__all__ = [
    "HEADS",
    "AdaFace",
    "AdaSin",
    "ArcFace",
    "CombinedMargin",
    "CosFace",
    "CurricularFace",
    "MVSoftmax",
    "MagFace",
    "MarginHead",
    "NormFace",
    "SFace",
    "SphereFace",
    "SubCenterArcFace",
    "UNPG",
    "X2Softmax",
]
