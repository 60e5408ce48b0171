"""The backbone contract (timm-style features) and the registry the package and tests are built from."""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class FeatureInfo:
    """What :meth:`FaceBackbone.forward_features` returns, known without running the network.

    Attributes:
        channels: channels ``C`` of the feature map.
        reduction: total stride from the input; every stride-2 step is a 3x3 conv with padding 1,
            so the map side is ``ceil(input_size / reduction)``.
        module: dotted name of the last stage that produces the map (as ``get_submodule`` takes it).
    """

    channels: int
    reduction: int
    module: str

    def side(self, input_size: int) -> int:
        """Spatial side of the feature map for square inputs of side ``input_size``."""
        return -(-input_size // self.reduction)


class FaceBackbone(nn.Module, abc.ABC):
    """Base of every backbone: ``images [B, 3, S, S] -> embeddings [B, embedding_dim]`` (unnormalised).

    The forward pass is split as in timm: :meth:`forward_features` (the conv trunk up to the
    last stage, ``[B, C, h, w]``) and :meth:`forward_head` (map -> embedding). Methods that need
    the feature map (GABN, PoseFace) call the two halves; nothing hooks the network. Subclasses
    set ``embedding_dim``, ``input_size`` and ``feature_info`` in ``__init__``.
    """

    embedding_dim: int
    input_size: int
    feature_info: FeatureInfo

    @abc.abstractmethod
    def forward_features(self, images: Tensor) -> Tensor:
        """Last-stage feature map ``[B, C, h, w]`` of images ``[B, 3, S, S]``."""

    @abc.abstractmethod
    def forward_head(self, features: Tensor) -> Tensor:
        """Embeddings ``[B, embedding_dim]`` from :meth:`forward_features`' map."""

    def forward(self, images: Tensor) -> Tensor:
        """Unnormalised embeddings ``[B, embedding_dim]``."""
        return self.forward_head(self.forward_features(images))

    def forward_with_features(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """``(embeddings, feature map)`` of one forward pass; the map stays in the autograd graph."""
        features = self.forward_features(images)
        return self.forward_head(features), features

    def feature_shape(self) -> tuple[int, int, int]:
        """``(C, h, w)`` of the feature map at this backbone's ``input_size``."""
        side = self.feature_info.side(self.input_size)
        return self.feature_info.channels, side, side

    def compile(self, *args: object, **kwargs: object) -> None:
        """``nn.Module.compile`` (keeps parameter names), extended to the two halves of the forward pass.

        The module calls :meth:`forward_features` and :meth:`forward_head` directly when a method
        needs the feature map; compiling only ``__call__`` would leave that path eager.
        """
        super().compile(*args, **kwargs)  # type: ignore[arg-type]
        self.forward_features = torch.compile(self.forward_features, *args, **kwargs)  # type: ignore[method-assign]
        self.forward_head = torch.compile(self.forward_head, *args, **kwargs)  # type: ignore[method-assign]


#: Every registered backbone factory by name (the factory's ``__name__``); tests are generated from it.
BACKBONES: dict[str, Callable[..., FaceBackbone]] = {}

FactoryT = TypeVar("FactoryT", bound=Callable[..., FaceBackbone])


def register_backbone(factory: FactoryT) -> FactoryT:
    """Decorator: list ``factory`` in :data:`BACKBONES` under its ``__name__`` (names must be unique)."""
    name = factory.__name__
    if name in BACKBONES and BACKBONES[name] is not factory:
        raise ValueError(f"backbone {name!r} is registered twice ({BACKBONES[name].__module__} and {factory.__module__})")
    BACKBONES[name] = factory
    return factory
