"""The shape of the backbone's last-stage feature map, for the methods that need the map (GABN, PoseFace).

Read through the backbone contract (:class:`fr_lightning.backbones.FaceBackbone`):
``feature_info`` gives the shape without running the network; the module takes the map itself
from ``forward_with_features`` in the same pass as the embedding. No hooks, no dummy pass.
"""

from __future__ import annotations

from fr_lightning.backbones.base import FaceBackbone


def feature_map_shape(backbone: FaceBackbone) -> tuple[int, int, int]:
    """``(C, h, w)`` of the backbone's feature map at its ``input_size`` (from ``feature_info``)."""
    return backbone.feature_shape()


def feature_channels(backbone: FaceBackbone) -> int:
    """Channels ``C`` of the backbone's feature map."""
    return backbone.feature_info.channels
