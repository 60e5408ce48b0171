"""Test defaults: offline W&B, quiet albumentations, small thread counts."""

import os

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("PYTHONHASHSEED", "0")

import torch  # noqa: E402

torch.set_num_threads(2)
