"""Full fully-connected classifier: cosine against every class centre."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fr_lightning.classifiers.base import Classifier, Scores


class FullFC(Classifier):
    """Normalised class centres; returns the cosine to every class.

    Args:
        embedding_dim: size of the backbone's embedding.
        num_classes: number of identities (linked from the data module by the CLI).
        subcenters: centres per class (Sub-center ArcFace); the head pools them.
    """

    def __init__(self, embedding_dim: int = 512, num_classes: int = 1000, subcenters: int = 1) -> None:
        super().__init__()
        self.embedding_dim = embedding_dim
        self.num_classes = num_classes
        self.subcenters = subcenters
        self.weight = nn.Parameter(torch.empty(num_classes * subcenters, embedding_dim))
        nn.init.normal_(self.weight, std=0.01)

    def forward(self, embeddings: Tensor, labels: Tensor) -> Scores:
        """Cosine ``[B, C*K]`` between normalised embeddings and centres; labels and rows unchanged."""
        x = F.normalize(embeddings.float(), dim=1)
        w = F.normalize(self.weight.float(), dim=1)
        return Scores(x @ w.t(), labels, embeddings)

    def cross_entropy(self, logits: Tensor, labels: Tensor) -> Tensor:
        """Per-sample softmax cross-entropy (float32); rows with label -1 get 0."""
        return F.cross_entropy(logits.float(), labels, reduction="none", ignore_index=-1)

    def predict(self, cosine: Tensor) -> Tensor:
        """Nearest class centre of each row of ``cosine`` (training accuracy, without margins)."""
        if self.subcenters > 1:
            cosine = cosine.view(cosine.shape[0], self.num_classes, self.subcenters).amax(dim=2)
        return cosine.argmax(dim=1)
