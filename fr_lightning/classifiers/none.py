"""No classifier: what a pair-based head (triplet, centroid triplet) trains with."""

from __future__ import annotations

import torch
from torch import Tensor

from fr_lightning.classifiers.base import Classifier, Scores


class NoClassifier(Classifier):
    """Holds no class centres and no parameter: the module builds it for a pair-based head, so
    nothing in the model or its checkpoint grows with the number of identities.

    ``forward`` returns a ``[B, 0]`` cosine (no class is scored); ``cross_entropy`` and
    ``predict`` are never reached with a pair-based head (the criterion asks the head for the loss).

    Args:
        embedding_dim: size of the backbone's embedding (recorded only).
        num_classes: ignored (accepted so the CLI's ``num_classes`` link still applies).
    """

    def __init__(self, embedding_dim: int = 512, num_classes: int = 0) -> None:
        super().__init__()
        self.embedding_dim = embedding_dim

    def forward(self, embeddings: Tensor, labels: Tensor) -> Scores:
        """An empty cosine ``[B, 0]``; labels and rows unchanged."""
        return Scores(embeddings.new_zeros((embeddings.shape[0], 0), dtype=torch.float32), labels, embeddings)

    def cross_entropy(self, logits: Tensor, labels: Tensor) -> Tensor:
        raise TypeError("NoClassifier has no logits: a pair-based head gives the loss")

    def predict(self, cosine: Tensor) -> Tensor:
        raise TypeError("NoClassifier has no class centres to predict with")
