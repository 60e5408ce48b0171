"""Small builders shared by tests: a tiny backbone, data module and trainer."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import torch

from fr_lightning.backbones import iresnet18
from fr_lightning.data import FaceDataModule, SyntheticPairs, SyntheticSource
from fr_lightning.heads import ArcFace
from fr_lightning.module import FaceRecognitionModule


def tiny_module(num_classes: int = 8, **kwargs: object) -> FaceRecognitionModule:
    """iResNet-18 at width 1/8 on 56 px with a 32-d embedding."""
    backbone = iresnet18(width=0.125, input_size=56, embedding_dim=32)
    return FaceRecognitionModule(backbone=backbone, head=ArcFace(s=16.0, m=0.3), num_classes=num_classes, **kwargs)


def tiny_data(num_identities: int = 8, pairs: int = 40, batch_size: int = 8) -> FaceDataModule:
    """A few synthetic identities and one small verification set, no worker processes."""
    return FaceDataModule(
        train=SyntheticSource(num_identities=num_identities, samples_per_identity=4),
        val_sets=[SyntheticPairs("synth-lfw", pairs=pairs)],
        image_size=56,
        batch_size=batch_size,
        val_batch_size=32,
        num_workers=0,
    )


def tiny_trainer(tmp_path, callbacks: list[pl.Callback] | None = None, **kwargs: object) -> pl.Trainer:
    """CPU trainer without logger output or progress bar."""
    defaults: dict[str, object] = dict(
        default_root_dir=str(tmp_path),
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
    )
    defaults.update(kwargs)
    return pl.Trainer(callbacks=callbacks or [], **defaults)


def tiny_teacher_backbone(embedding_dim: int = 48) -> torch.nn.Module:
    """The architecture of :func:`tiny_teacher` checkpoints (iResNet-18 at width 1/8 on 56 px)."""
    return iresnet18(width=0.125, input_size=56, embedding_dim=embedding_dim)


def tiny_teacher(path: Path, embedding_dim: int = 48, num_classes: int | None = 8, seed: int = 0) -> Path:
    """Write a random teacher as a checkpoint of this project (``backbone.*`` + ``classifier.weight``).

    ``num_classes=None`` writes an insightface-style bare backbone state_dict instead.
    """
    torch.manual_seed(seed)
    backbone = tiny_teacher_backbone(embedding_dim)
    if num_classes is None:
        torch.save(backbone.state_dict(), path)
        return path
    state = {f"backbone.{k}": v for k, v in backbone.state_dict().items()}
    state["classifier.weight"] = torch.randn(num_classes, embedding_dim)
    torch.save({"state_dict": state}, path)
    return path
