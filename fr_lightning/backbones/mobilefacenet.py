"""MobileFaceNet backbone, state-dict compatible with insightface arcface_torch's ``mbf``.

Chen et al., "MobileFaceNets: Efficient CNNs for Accurate Real-Time Face Verification", 2018,
in the arcface_torch variant: a channel ``scale`` factor, configurable ``blocks`` per residual
stage, and a global depthwise convolution (GDC) embedding head. With ``width=1`` and
``input_size=112`` names and shapes match insightface (``mbf``: ``blocks=(1, 4, 6, 2), scale=2``;
``mbf_large``: ``blocks=(2, 8, 12, 4), scale=4``).
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

__all__ = [
    "ConvBlock",
    "DepthWise",
    "GDC",
    "LinearBlock",
    "MobileFaceNet",
    "Residual",
    "mobilefacenet",
    "mobilefacenet_large",
]


class LinearBlock(nn.Module):
    """Conv (no bias) + BatchNorm with no activation (linear bottleneck / GDC), in ``self.layers`` as insightface.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel: square kernel size.
        stride: convolution stride.
        padding: zero padding on each side.
        groups: convolution groups.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel: int = 1, stride: int = 1, padding: int = 0, groups: int = 1
    ) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=padding, groups=groups, bias=False),
            nn.BatchNorm2d(out_channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        """Feature map (activated for :class:`ConvBlock`)."""
        return self.layers(x)


class ConvBlock(LinearBlock):
    """:class:`LinearBlock` followed by PReLU (``layers.2``, insightface's name); same arguments."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel: int = 1, stride: int = 1, padding: int = 0, groups: int = 1
    ) -> None:
        super().__init__(in_channels, out_channels, kernel, stride, padding, groups)
        self.layers.append(nn.PReLU(out_channels))


class DepthWise(nn.Module):
    """Inverted bottleneck: 1x1 expand -> depthwise 3x3 (stride) -> 1x1 linear projection.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        expansion: channels of the depthwise middle layer (insightface calls it ``groups``).
        stride: stride of the depthwise convolution.
        residual: add the input to the output (requires matching shapes).
    """

    def __init__(
        self, in_channels: int, out_channels: int, expansion: int, stride: int = 2, residual: bool = False
    ) -> None:
        super().__init__()
        self.residual = residual
        self.layers = nn.Sequential(
            ConvBlock(in_channels, expansion, kernel=1),
            ConvBlock(expansion, expansion, kernel=3, stride=stride, padding=1, groups=expansion),
            LinearBlock(expansion, out_channels, kernel=1),
        )

    def forward(self, x: Tensor) -> Tensor:
        """Block output, plus the input when ``residual``."""
        out = self.layers(x)
        return out + x if self.residual else out


class Residual(nn.Module):
    """A stack of ``num_blocks`` stride-1 residual ``DepthWise`` blocks at constant width.

    Args:
        channels: input and output channels.
        num_blocks: number of blocks.
        expansion: channels of each block's depthwise layer.
    """

    def __init__(self, channels: int, num_blocks: int, expansion: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            *[DepthWise(channels, channels, expansion, stride=1, residual=True) for _ in range(num_blocks)]
        )

    def forward(self, x: Tensor) -> Tensor:
        """Output of the stacked blocks."""
        return self.layers(x)


class GDC(nn.Module):
    """Global depthwise convolution embedding: depthwise conv over the whole map, linear, BN1d.

    Args:
        channels: channels of the incoming feature map.
        kernel: spatial side of the incoming feature map (7 for 112x112 inputs).
        embedding_dim: size of the output embedding.
    """

    def __init__(self, channels: int, kernel: int, embedding_dim: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            LinearBlock(channels, channels, kernel=kernel, groups=channels),
            nn.Flatten(),
            nn.Linear(channels, embedding_dim, bias=False),
            nn.BatchNorm1d(embedding_dim),
        )

    def forward(self, x: Tensor) -> Tensor:
        """Embeddings ``[B, embedding_dim]``."""
        return self.layers(x)


class MobileFaceNet(FaceBackbone):
    """MobileFaceNet as in insightface arcface_torch (``mbf`` / ``mbf_large``).

    ``forward_features`` returns the output of ``conv_sep``, the last 1x1 conv block
    (PReLU-activated ``[B, 512*width, S/16, S/16]`` map) feeding the GDC embedding head.

    Args:
        embedding_dim: size of the output embedding.
        width: multiplier on all channel counts; 1.0 matches insightface checkpoints.
        input_size: side of the square input images; sets the GDC kernel (7 for 112).
        blocks: residual blocks in the four stages (a first entry of 1 means a single
            grouped 3x3 conv block instead of a residual stack, as in insightface).
        scale: channel multiplier of the trunk (2 for ``mbf``, 4 for ``mbf_large``).
        fp16: run the trunk up to ``conv_sep`` under float16 autocast on CUDA.
        gradient_checkpointing: recompute activations of each trunk stage in backward.
    """

    def __init__(
        self,
        embedding_dim: int = 512,
        width: float = 1.0,
        input_size: int = 112,
        blocks: tuple[int, int, int, int] = (1, 4, 6, 2),
        scale: int = 2,
        fp16: bool = False,
        gradient_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        if len(blocks) != 4 or min(blocks) < 1:
            raise ValueError(f"blocks needs 4 positive stage depths, got {blocks}")
        self.blocks = tuple(int(b) for b in blocks)
        self.embedding_dim = embedding_dim
        self.width = width
        self.input_size = input_size
        self.scale = scale
        self.fp16 = fp16

        def ch(c: int) -> int:
            return scale_channels(c, width)

        # Trunk widths scale with ``scale``; the depthwise expansions (insightface's hard-coded
        # ``groups`` 64/128/256/512) do not. Building c_low from ch(64) keeps the grouped conv
        # below divisible at any width.
        c_low, c_high = ch(64) * scale, ch(128) * scale
        if self.blocks[0] == 1:
            first: nn.Module = ConvBlock(c_low, c_low, kernel=3, stride=1, padding=1, groups=ch(64))
        else:
            first = Residual(c_low, self.blocks[0], ch(128))
        self.layers = CheckpointedSequential(
            ConvBlock(3, c_low, kernel=3, stride=2, padding=1),
            first,
            DepthWise(c_low, c_low, ch(128), stride=2),
            Residual(c_low, self.blocks[1], ch(128)),
            DepthWise(c_low, c_high, ch(256), stride=2),
            Residual(c_high, self.blocks[2], ch(256)),
            DepthWise(c_high, c_high, ch(512), stride=2),
            Residual(c_high, self.blocks[3], ch(256)),
        )
        self.conv_sep = ConvBlock(c_high, ch(512), kernel=1)

        side = input_size
        for _ in range(4):  # the stem and three DepthWise blocks each halve the resolution
            side = conv_out_size(side)
        if side < 1:
            raise ValueError(f"input_size {input_size} is too small for MobileFaceNet")
        self.feature_info = FeatureInfo(channels=ch(512), reduction=16, module="conv_sep")
        self.features = GDC(ch(512), side, embedding_dim)
        self._init_weights()
        self.gradient_checkpointing = gradient_checkpointing

    def _init_weights(self) -> None:
        # insightface: Kaiming-normal (fan_out, relu) convs and linears, unit BatchNorm2d.
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @property
    def gradient_checkpointing(self) -> bool:
        """Whether each entry of ``layers`` is recomputed in backward (training only)."""
        return self.layers.gradient_checkpointing

    @gradient_checkpointing.setter
    def gradient_checkpointing(self, enabled: bool) -> None:
        self.layers.gradient_checkpointing = bool(enabled)

    def forward_features(self, images: Tensor) -> Tensor:
        """``conv_sep``'s feature map of images ``[B, 3, S, S]`` (float32: it runs outside ``fp16``'s autocast)."""
        check_input(images.shape, self.input_size)
        with trunk_autocast(self.fp16, images.device):
            x = self.layers(images)
        return self.conv_sep(x.float() if self.fp16 else x)

    def forward_head(self, features: Tensor) -> Tensor:
        """Unnormalised embeddings ``[B, embedding_dim]`` from the GDC head."""
        return self.features(features)


def _variant(name: str, title: str, blocks: tuple[int, int, int, int], scale: int) -> Callable[..., MobileFaceNet]:
    """A registered factory named ``name`` whose ``blocks`` / ``scale`` defaults are insightface's for it."""
    default_blocks, default_scale = blocks, scale

    def factory(
        embedding_dim: int = 512,
        width: float = 1.0,
        input_size: int = 112,
        blocks: tuple[int, int, int, int] = default_blocks,
        scale: int = default_scale,
        fp16: bool = False,
        gradient_checkpointing: bool = False,
    ) -> MobileFaceNet:
        return MobileFaceNet(embedding_dim, width, input_size, blocks, scale, fp16, gradient_checkpointing)

    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = f"""{title}.

    Args:
        embedding_dim: size of the output embedding.
        width: multiplier on all channel counts; 1.0 matches insightface checkpoints.
        input_size: side of the square input images (112 for insightface checkpoints).
        blocks: residual blocks in the four stages.
        scale: channel multiplier of the trunk.
        fp16: run the trunk under float16 autocast on CUDA.
        gradient_checkpointing: recompute activations of each trunk stage in backward.
    """
    return register_backbone(factory)


mobilefacenet = _variant("mobilefacenet", "MobileFaceNet (insightface ``mbf``)", (1, 4, 6, 2), 2)
mobilefacenet_large = _variant("mobilefacenet_large", "Large MobileFaceNet (insightface ``mbf_large``)", (2, 8, 12, 4), 4)
