"""Classifiers hold the class centres and produce cosine logits (contract: :class:`Classifier`)."""

from fr_lightning.classifiers.base import Classifier, Scores
from fr_lightning.classifiers.f2c import F2C, F2CGallery
from fr_lightning.classifiers.full_fc import FullFC
from fr_lightning.classifiers.none import NoClassifier
from fr_lightning.classifiers.partial_fc import PartialFC

__all__ = ["Classifier", "F2C", "F2CGallery", "FullFC", "NoClassifier", "PartialFC", "Scores"]
