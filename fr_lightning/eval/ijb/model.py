"""Build a checkpoint's evaluation embedding (``module.embedding_network()``) for offline evaluation."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
import yaml
from torch import nn

from fr_lightning.data import normalize_images

__all__ = ["Embedder", "find_run_config", "load_embedder"]

#: Top-level keys a saved ``fit``/``test`` config may carry that a bare model parse rejects.
_RUN_ONLY_KEYS = ("ckpt_path", "weights_only", "verbose", "return_predictions")


class Embedder:
    """Embeds aligned uint8 RGB crops ``[B, S, S, 3]`` into ``[B, 2, D]`` float32 (image, mirrored image).

    Args:
        network: ``images [B, 3, S, S] in [-1, 1] -> [B, D]``.
        image_size: the side ``S`` the network expects (crops are aligned to it).
        device: torch device to run on.
    """

    def __init__(self, network: nn.Module, image_size: int, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.network = network.to(self.device).eval()
        self.image_size = int(image_size)

    @torch.no_grad()
    def __call__(self, images: np.ndarray) -> np.ndarray:
        x = normalize_images(images).to(self.device)
        a = self.network(x)
        b = self.network(torch.flip(x, dims=[3]))
        return torch.stack([a, b], dim=1).float().cpu().numpy()


def find_run_config(ckpt: Path) -> Path | None:
    """The ``config.yaml`` that ``fr fit`` saved in the checkpoint's run directory, if any."""
    for parent in list(ckpt.resolve().parents)[:3]:
        if (parent / "config.yaml").is_file():
            return parent / "config.yaml"
    return None


def _resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def load_embedder(ckpt: str | Path, config: str | Path | None = None, device: str = "auto") -> Embedder:
    """Instantiate the model of ``config`` (default: the run's saved ``config.yaml``) and load ``ckpt``.

    The checkpoint is read with ``torch.load(weights_only=True)``; its ``state_dict`` must match the
    model exactly. The crop size is the data module's ``image_size``.

    Raises:
        FileNotFoundError: no checkpoint, or no config given and none next to the checkpoint.
        ValueError: the config does not build, or the weights do not fit the model.
    """
    from fr_lightning.cli import cli_main

    ckpt = Path(ckpt)
    if not ckpt.is_file():
        raise FileNotFoundError(f"checkpoint {ckpt} does not exist")
    cfg = Path(config) if config is not None else find_run_config(ckpt)
    if cfg is None:
        raise FileNotFoundError(f"no config.yaml in the run directory of {ckpt}; pass --config RECIPE")
    if not cfg.is_file():
        raise FileNotFoundError(f"config {cfg} does not exist")
    data = yaml.safe_load(cfg.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{cfg}: expected a YAML mapping at the top level")
    for key in _RUN_ONLY_KEYS:
        data.pop(key, None)
    with tempfile.TemporaryDirectory() as tmp:
        clean = Path(tmp) / "config.yaml"
        clean.write_text(yaml.safe_dump(data))
        try:
            cli = cli_main(["--config", str(clean), "--trainer.logger=false", "--trainer.accelerator=cpu", "--trainer.devices=1"], run=False)
        except SystemExit as stop:
            raise ValueError(f"{cfg}: the configuration does not build a model (exit {stop.code}); see the message above") from None
    module = cli.model
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    state = state.get("state_dict") if isinstance(state, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"{ckpt} is not a Lightning checkpoint (no 'state_dict' entry)")
    result = module.load_state_dict(state, strict=False)
    if result.missing_keys:
        raise ValueError(f"{ckpt} does not fit the model of {cfg}: missing {result.missing_keys[:5]}")
    size = int(getattr(cli.datamodule, "image_size", 112))
    return Embedder(module.embedding_network(), size, _resolve_device(device))
