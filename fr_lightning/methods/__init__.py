"""Training methods, each a `Method` callback over a functional core."""

from fr_lightning.methods.base import Method, check_methods
from fr_lightning.methods.coteaching import CoTeaching
from fr_lightning.methods.distill import Distillation
from fr_lightning.methods.gabn import GABN
from fr_lightning.methods.lowres import MultiResolution
from fr_lightning.methods.poseface import PoseFace

__all__ = ["CoTeaching", "Distillation", "GABN", "Method", "MultiResolution", "PoseFace", "check_methods"]
