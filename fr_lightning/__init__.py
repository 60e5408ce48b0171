"""fr-lightning: PyTorch Lightning recipes for training face-recognition models."""

import os as _os

# The one place it is set: every module of the package imports this file first, so albumentations
# (imported by the data transforms) never phones home for updates.
_os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from fr_lightning.batch import FaceBatch, StepOutput  # noqa: E402
from fr_lightning.data.datamodule import FaceDataModule  # noqa: E402
from fr_lightning.module import FaceRecognitionModule  # noqa: E402
from fr_lightning.schedules import LRSchedule  # noqa: E402

__all__ = ["FaceBatch", "FaceDataModule", "FaceRecognitionModule", "LRSchedule", "StepOutput"]
__version__ = "0.1.0"
