"""Backbones: ``forward(images[B, 3, H, W]) -> embeddings[B, D]`` plain ``nn.Module``s.

Every backbone exposes ``embedding_dim`` and ``feature_layer`` (dotted name of the last conv
stage, for ``get_submodule`` + forward hooks). YAML can name a factory or a class directly::

    backbone:
      class_path: fr_lightning.backbones.IResNet
      init_args: {layers: [2, 2, 2, 2], width: 0.25, input_size: 56}

``BACKBONES`` lists every factory; the test-suite is generated from it.
"""

from collections.abc import Callable

from torch import nn

from fr_lightning.backbones.iresnet import (
    IBasicBlock,
    IResNet,
    iresnet18,
    iresnet34,
    iresnet50,
    iresnet100,
    iresnet200,
)
from fr_lightning.backbones.mobilefacenet import MobileFaceNet, mobilefacenet, mobilefacenet_large

BACKBONES: dict[str, Callable[..., nn.Module]] = {
    "iresnet18": iresnet18,
    "iresnet34": iresnet34,
    "iresnet50": iresnet50,
    "iresnet100": iresnet100,
    "iresnet200": iresnet200,
    "mobilefacenet": mobilefacenet,
    "mobilefacenet_large": mobilefacenet_large,
}

__all__ = [
    "BACKBONES",
    "IBasicBlock",
    "IResNet",
    "MobileFaceNet",
    "iresnet18",
    "iresnet34",
    "iresnet50",
    "iresnet100",
    "iresnet200",
    "mobilefacenet",
    "mobilefacenet_large",
]
