"""Margin heads: turn cosines ``[B, C]`` into scaled logits (or a per-sample loss for SFace).

Every head follows :class:`MarginHead`'s contract. Adding a head is one file in this package
whose class carries ``@register_head`` (that lists it in ``HEADS`` under the file's name, also the
``configs/heads/<name>.yaml`` name with underscores written as hyphens; the tests are generated
from ``HEADS``) plus one import line below, so YAML can say ``class_path: fr_lightning.heads.<Class>``.
``tests/test_layout.py`` checks that the imports below and the registry list the same heads.
"""

from __future__ import annotations

from fr_lightning.heads.adaface import AdaFace
from fr_lightning.heads.adasin import AdaSin
from fr_lightning.heads.arcface import ArcFace
from fr_lightning.heads.base import HEADS, MarginHead, register_head
from fr_lightning.heads.combined import CombinedMargin
from fr_lightning.heads.cosface import CosFace
from fr_lightning.heads.ctl import CentroidTriplet
from fr_lightning.heads.curricularface import CurricularFace
from fr_lightning.heads.magface import MagFace
from fr_lightning.heads.mvsoftmax import MVSoftmax
from fr_lightning.heads.normface import NormFace
from fr_lightning.heads.search_softmax import SearchSoftmax
from fr_lightning.heads.sface import SFace
from fr_lightning.heads.sphereface import SphereFace
from fr_lightning.heads.subcenter import SubCenterArcFace
from fr_lightning.heads.triplet import PairHead, Triplet
from fr_lightning.heads.unpg import UNPG
from fr_lightning.heads.x2softmax import X2Softmax

__all__ = [
    "HEADS",
    "UNPG",
    "AdaFace",
    "AdaSin",
    "ArcFace",
    "CentroidTriplet",
    "CombinedMargin",
    "CosFace",
    "CurricularFace",
    "MVSoftmax",
    "MagFace",
    "MarginHead",
    "NormFace",
    "PairHead",
    "SFace",
    "SearchSoftmax",
    "SphereFace",
    "SubCenterArcFace",
    "Triplet",
    "X2Softmax",
    "register_head",
]
