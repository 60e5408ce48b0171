"""Small helpers shared by the backbone families (channel scaling, checkpointing, fp16)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.checkpoint import checkpoint


def scale_channels(channels: int, width: float) -> int:
    """Channel count ``channels * width``, rounded, never below 1."""
    if width <= 0:
        raise ValueError(f"width must be positive, got {width}")
    return max(1, int(round(channels * width)))


def conv_out_size(size: int, kernel: int = 3, stride: int = 2, padding: int = 1) -> int:
    """Spatial output size of a convolution (no dilation)."""
    return (size + 2 * padding - kernel) // stride + 1


def check_input(shape: torch.Size, input_size: int) -> None:
    """Fail early, with a readable message, when an input batch's ``shape`` does not match ``input_size``.

    The flattened fc / GDC kernel of these backbones is sized for one input resolution.
    """
    if len(shape) != 4 or shape[1] != 3 or tuple(shape[-2:]) != (input_size, input_size):
        raise ValueError(
            f"expected images of shape [B, 3, {input_size}, {input_size}] "
            f"(set the backbone's input_size), got {list(shape)}"
        )


def trunk_autocast(enabled: bool, device: torch.device) -> contextlib.AbstractContextManager:
    """Half-precision autocast for the conv trunk when ``enabled`` and the input is on a CUDA ``device``.

    insightface writes ``torch.cuda.amp.autocast(self.fp16)``, which also *disables* an
    outer autocast when ``fp16`` is False. We return a no-op instead so Lightning's
    ``precision="16-mixed"`` keeps working on backbones built with ``fp16=False``.
    """
    if enabled and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.float16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def frozen_running_stats(module: nn.Module) -> Iterator[None]:
    """Undo, on exit, any BatchNorm running-statistics update made under ``module`` inside.

    Used as the recompute context of activation checkpointing, so the backward-time
    recomputation does not count the batch a second time. The statistics are restored in
    place (not by switching ``track_running_stats`` off) so the recomputation saves exactly
    the same tensors as the original forward, which non-reentrant checkpointing requires.
    """
    saved = [
        (buf, buf.clone())
        for m in module.modules()
        if isinstance(m, _BatchNorm) and m.track_running_stats
        for buf in (m.running_mean, m.running_var, m.num_batches_tracked)
        if buf is not None
    ]
    try:
        yield
    finally:
        with torch.no_grad():
            for buf, value in saved:
                buf.copy_(value)


def checkpointed(module: nn.Module, x: Tensor) -> Tensor:
    """Run ``module(x)`` under non-reentrant activation checkpointing.

    The backward-time recomputation runs with BatchNorm running statistics frozen, so
    running stats and outputs match a run without checkpointing.
    """
    return checkpoint(
        module,
        x,
        use_reentrant=False,
        context_fn=lambda: (contextlib.nullcontext(), frozen_running_stats(module)),
    )


class CheckpointedSequential(nn.Sequential):
    """``nn.Sequential`` that can checkpoint each child separately while training.

    Checkpointing the children (not the container) keeps forward hooks registered on the
    container itself (``layer4``, for instance) firing exactly once per forward pass, outside
    any recomputation, so hook-based methods see one call with a normal autograd graph.
    """

    gradient_checkpointing: bool = False

    def forward(self, x: Tensor) -> Tensor:
        """Apply the children in order, checkpointing each when enabled and training."""
        use_ckpt = self.gradient_checkpointing and self.training and torch.is_grad_enabled()
        for child in self:
            x = checkpointed(child, x) if use_ckpt else child(x)
        return x
