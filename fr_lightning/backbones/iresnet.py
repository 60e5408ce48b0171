"""Improved ResNet (iResNet) face backbones, state-dict compatible with insightface arcface_torch.

With ``width=1`` and ``input_size=112`` every parameter and buffer has insightface's name and
shape, so a published arcface_torch ``backbone.pth`` loads with ``load_state_dict(strict=True)``.
``width`` and ``input_size`` exist for small CPU configurations (synthetic data, tests).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from fr_lightning.backbones._common import (
    CheckpointedSequential,
    check_input,
    conv_out_size,
    scale_channels,
    trunk_autocast,
)
from fr_lightning.backbones.base import FaceBackbone, FeatureInfo, register_backbone

__all__ = ["IBasicBlock", "IResNet", "iresnet18", "iresnet34", "iresnet50", "iresnet100", "iresnet200"]


class IBasicBlock(nn.Module):
    """Pre-activation residual block: BN-conv3x3-BN-PReLU-conv3x3(stride)-BN plus shortcut.

    The stride sits on the second convolution, and the shortcut is a strided 1x1 conv + BN
    whenever the shape changes (as in insightface).

    Args:
        inplanes: input channels.
        planes: output channels.
        stride: stride of the second 3x3 convolution (and of the shortcut projection).
    """

    def __init__(self, inplanes: int = 64, planes: int = 64, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes, eps=1e-5)
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, eps=1e-5)
        self.prelu = nn.PReLU(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes, eps=1e-5)
        self.downsample: nn.Sequential | None = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes, eps=1e-5),
            )
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        """Residual output ``[B, planes, H/stride, W/stride]``."""
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        identity = x if self.downsample is None else self.downsample(x)
        # Out-of-place add: a forward hook may hold on to ``out``.
        return out + identity


class IResNet(FaceBackbone):
    """iResNet trunk with insightface's "E" output block (BN-Dropout-FC-BN).

    ``forward_features`` returns ``layer4``'s map ``[B, 512*width, S/16, S/16]``.

    Args:
        layers: number of ``IBasicBlock`` per stage, e.g. ``[3, 4, 14, 3]`` for iResNet-50.
        embedding_dim: size of the output embedding.
        width: multiplier on the channel counts (64/128/256/512); 1.0 matches insightface.
        input_size: side of the square input images; sets the flattened fc input size.
        dropout: dropout probability before the fc layer.
        fp16: run the conv trunk under float16 autocast on CUDA (insightface's ``fp16`` flag).
        gradient_checkpointing: recompute activations of every residual block in backward.
    """

    def __init__(
        self,
        layers: tuple[int, int, int, int] = (3, 4, 14, 3),
        embedding_dim: int = 512,
        width: float = 1.0,
        input_size: int = 112,
        dropout: float = 0.0,
        fp16: bool = False,
        gradient_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        if len(layers) != 4:
            raise ValueError(f"layers needs 4 stage depths, got {layers}")
        self.layers = tuple(int(n) for n in layers)
        self.embedding_dim = embedding_dim
        self.width = width
        self.input_size = input_size
        self.fp16 = fp16

        planes = [scale_channels(c, width) for c in (64, 128, 256, 512)]
        self.conv1 = nn.Conv2d(3, planes[0], kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes[0], eps=1e-5)
        self.prelu = nn.PReLU(planes[0])
        inplanes = planes[0]
        for i, (p, depth) in enumerate(zip(planes, self.layers), start=1):
            stage = CheckpointedSequential(
                *[IBasicBlock(inplanes if b == 0 else p, p, stride=2 if b == 0 else 1) for b in range(depth)]
            )
            self.add_module(f"layer{i}", stage)
            inplanes = p
        self.bn2 = nn.BatchNorm2d(planes[3], eps=1e-5)
        self.dropout = nn.Dropout(p=dropout)

        side = input_size
        for _ in range(4):  # every stage halves the resolution (3x3, stride 2, padding 1)
            side = conv_out_size(side)
        if side < 1:
            raise ValueError(f"input_size {input_size} is too small for four stride-2 stages")
        self.feature_info = FeatureInfo(channels=planes[3], reduction=16, module="layer4")
        self.fc = nn.Linear(planes[3] * side * side, embedding_dim)
        self.features = nn.BatchNorm1d(embedding_dim, eps=1e-5)
        self._init_weights()
        self.gradient_checkpointing = gradient_checkpointing

    def _init_weights(self) -> None:
        # insightface: N(0, 0.1) convs, unit BN; the final BN1d scale is fixed to 1 (not trained).
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.1)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.ones_(self.features.weight)
        self.features.weight.requires_grad = False

    @property
    def stages(self) -> list[CheckpointedSequential]:
        """The four residual stages ``layer1`` .. ``layer4``."""
        return [self.layer1, self.layer2, self.layer3, self.layer4]

    @property
    def gradient_checkpointing(self) -> bool:
        """Whether residual blocks are recomputed in backward (training only)."""
        return self.layer1.gradient_checkpointing

    @gradient_checkpointing.setter
    def gradient_checkpointing(self, enabled: bool) -> None:
        for stage in self.stages:
            stage.gradient_checkpointing = bool(enabled)

    def forward_features(self, images: Tensor) -> Tensor:
        """``layer4``'s feature map of images ``[B, 3, S, S]`` (float16 on CUDA with ``fp16``)."""
        check_input(images.shape, self.input_size)
        with trunk_autocast(self.fp16, images.device):
            x = self.prelu(self.bn1(self.conv1(images)))
            x = self.layer1(x)
            x = self.layer2(x)
            x = self.layer3(x)
            return self.layer4(x)

    def forward_head(self, features: Tensor) -> Tensor:
        """Unnormalised embeddings ``[B, embedding_dim]``: BN, dropout, fc (float32), BN."""
        with trunk_autocast(self.fp16, features.device):
            x = self.dropout(self.bn2(features).flatten(1))
        x = self.fc(x.float() if self.fp16 else x)
        return self.features(x)


#: insightface's stage depths per iResNet variant (``r18`` ... ``r200``).
DEPTHS: dict[int, tuple[int, int, int, int]] = {
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 14, 3),
    100: (3, 13, 30, 3),
    200: (6, 26, 60, 6),
}


def _depth_factory(depth: int) -> Callable[..., IResNet]:
    """A registered ``iresnet<depth>`` factory with a typed, documented signature (the YAML schema)."""
    layers = DEPTHS[depth]

    def factory(
        embedding_dim: int = 512,
        width: float = 1.0,
        input_size: int = 112,
        dropout: float = 0.0,
        fp16: bool = False,
        gradient_checkpointing: bool = False,
    ) -> IResNet:
        return IResNet(layers, embedding_dim, width, input_size, dropout, fp16, gradient_checkpointing)

    factory.__name__ = factory.__qualname__ = f"iresnet{depth}"
    factory.__doc__ = f"""iResNet-{depth}, stage depths {list(layers)} (insightface ``r{depth}``).

    Args:
        embedding_dim: size of the output embedding.
        width: multiplier on the channel counts; 1.0 matches insightface checkpoints.
        input_size: side of the square input images (112 for insightface checkpoints).
        dropout: dropout probability before the fc layer.
        fp16: run the conv trunk under float16 autocast on CUDA.
        gradient_checkpointing: recompute activations of every residual block in backward.
    """
    return register_backbone(factory)


iresnet18 = _depth_factory(18)
iresnet34 = _depth_factory(34)
iresnet50 = _depth_factory(50)
iresnet100 = _depth_factory(100)
iresnet200 = _depth_factory(200)


