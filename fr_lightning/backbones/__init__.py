"""Backbones: :class:`FaceBackbone` subclasses, ``images[B, 3, H, W] -> embeddings[B, D]``.

Every backbone exposes ``embedding_dim``, ``input_size``, ``feature_info`` and the two halves
of its forward pass, ``forward_features`` / ``forward_head`` (see :mod:`.base`). YAML names a
class (or, from Python, a factory)::

    backbone:
      class_path: fr_lightning.backbones.IResNet
      init_args: {layers: [2, 2, 2, 2], width: 0.25, embedding_dim: 128}

(``input_size`` comes from ``data.image_size``: the command line links them.) Adding a backbone
is one file in this package, whose factories carry ``@register_backbone`` (which lists them in
``BACKBONES``, the registry the tests are generated from), plus its import lines below.
``tests/test_layout.py`` checks that the imports below and the registry agree.
"""

from __future__ import annotations

from fr_lightning.backbones.base import BACKBONES, FaceBackbone, FeatureInfo, register_backbone
from fr_lightning.backbones.iresnet import IBasicBlock, IResNet, iresnet18, iresnet34, iresnet50, iresnet100, iresnet200
from fr_lightning.backbones.mobilefacenet import (
    GDC,
    ConvBlock,
    DepthWise,
    LinearBlock,
    MobileFaceNet,
    Residual,
    mobilefacenet,
    mobilefacenet_large,
)

__all__ = [
    "BACKBONES",
    "GDC",
    "ConvBlock",
    "DepthWise",
    "FaceBackbone",
    "FeatureInfo",
    "IBasicBlock",
    "IResNet",
    "LinearBlock",
    "MobileFaceNet",
    "Residual",
    "iresnet18",
    "iresnet34",
    "iresnet50",
    "iresnet100",
    "iresnet200",
    "mobilefacenet",
    "mobilefacenet_large",
    "register_backbone",
]
