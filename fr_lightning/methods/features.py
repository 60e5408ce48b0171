"""Shape of the backbone's last-stage feature map (the one the module's forward hook keeps)."""

from __future__ import annotations

import torch
from torch import nn


def feature_map_shape(backbone: nn.Module) -> tuple[int, int, int]:
    """``(C, h, w)`` of the backbone's ``feature_layer`` output, from one dummy forward pass in eval mode."""
    layer = backbone.get_submodule(backbone.feature_layer)  # type: ignore[arg-type]
    size = int(getattr(backbone, "input_size", 112))
    seen: list[tuple[int, int, int]] = []
    handle = layer.register_forward_hook(lambda m, i, o: seen.append(tuple(int(d) for d in o.shape[1:4])))
    was_training = backbone.training
    try:
        param = next(backbone.parameters())
        backbone.eval()
        with torch.no_grad():
            backbone(torch.zeros(2, 3, size, size, device=param.device, dtype=param.dtype))
    finally:
        handle.remove()
        backbone.train(was_training)
    return seen[-1]  # type: ignore[return-value]


def feature_channels(backbone: nn.Module) -> int:
    """Channels of the backbone's ``feature_layer`` output."""
    return feature_map_shape(backbone)[0]
