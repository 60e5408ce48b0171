"""Classifiers hold the class centres and produce cosine logits."""

from fr_lightning.classifiers.full_fc import FullFC

__all__ = ["FullFC"]
