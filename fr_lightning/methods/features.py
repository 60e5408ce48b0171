"""The backbone's last-stage feature map for the methods that need it (GABN, PoseFace).

Read through the backbone contract (:class:`fr_lightning.backbones.FaceBackbone`):
``forward_features`` / ``forward_head`` give the map in the same pass as the embedding, and
``feature_info`` gives its shape without running the network. No hooks, no dummy pass.
"""

from __future__ import annotations

from torch import Tensor

from fr_lightning.backbones.base import FaceBackbone


def embed_with_features(backbone: FaceBackbone, images: Tensor, keep_features: bool) -> tuple[Tensor, Tensor | None]:
    """Embeddings ``[B, D]`` and, when ``keep_features``, the feature map ``[B, C, h, w]`` (else None).

    Without ``keep_features`` the backbone is called as a whole (``__call__``: hooks and a
    compiled forward apply as usual).
    """
    if keep_features:
        return backbone.forward_with_features(images)
    return backbone(images), None


def feature_map_shape(backbone: FaceBackbone) -> tuple[int, int, int]:
    """``(C, h, w)`` of the backbone's feature map at its ``input_size`` (from ``feature_info``)."""
    return backbone.feature_shape()


def feature_channels(backbone: FaceBackbone) -> int:
    """Channels ``C`` of the backbone's feature map."""
    return backbone.feature_info.channels
