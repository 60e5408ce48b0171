"""The classifier contract: class centres -> cosines, plus the classifier's own CE and checkpoint layout."""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from torch import Tensor, nn

if TYPE_CHECKING:
    from fr_lightning.batch import FaceBatch
    from fr_lightning.heads.base import MarginHead

#: Checkpoint key recording which optimizer parameter holds a classifier's centres.
OPTIMIZER_INDEX_KEY = "sharded_classifier_param"


@dataclass(frozen=True)
class Scores:
    """What :meth:`Classifier.forward` returns; unpacks as the pair ``cosine, target = classifier(x, y)``.

    Attributes:
        cosine: ``[B', C']`` cosines of the scored rows against (a sample of) the centres.
        target: ``[B']`` labels as columns of ``cosine`` (-1: the positive is not among them).
        rows: ``[B', D]`` the raw embeddings of ``cosine``'s rows (what the margin head reads norms
            and directions from): the batch's own, every rank's under a sharded classifier, or the
            batch repeated when each sample is scored more than once.
    """

    cosine: Tensor
    target: Tensor
    rows: Tensor

    def __iter__(self) -> Iterator[Tensor]:
        return iter((self.cosine, self.target))


class Classifier(nn.Module, abc.ABC):
    """Base of every classifier: holds ``weight`` (``[C*K, D]`` centres) and scores embeddings.

    The module only calls what is defined here, so a new classifier overrides what differs and
    inherits the rest:

    * :meth:`forward` (abstract): ``(embeddings, labels) ->`` :class:`Scores` (cosine ``[B', C']``,
      labels as its columns ``[B']``, and the embeddings of its rows ``[B', D]``).
    * :meth:`cross_entropy` / :meth:`predict` (abstract): per-sample CE and nearest centre.
    * :meth:`rows`: lays out another per-sample tensor ``[B, ...]`` as ``forward``'s rows
      (e.g. per-sample target margins; identity here).
    * :meth:`bind` (setup) and :meth:`prepare_batch` (each training step): a classifier that
      needs the run's backbone, head or images owns what it builds from them (F²C's gallery
      network); no-ops here.
    * :meth:`setup` / :attr:`sharded` / :meth:`ddp_ignore`: sharding across ranks and what DDP
      must leave alone (no-ops here).
    * :meth:`save_optimizer_state` / :meth:`load_optimizer_state`: put the optimizer state of
      ``weight`` into a world-size-independent layout in the checkpoint and back (no-ops here).

    Class attributes give the defaults the module reads: ``subcenters`` (centres per class),
    ``sample_rate`` (fraction of classes scored per step), ``sparse_grad`` (centres receive a row-sparse gradient, see :mod:`fr_lightning.optim`),
    ``last_index`` (the local class sample of the last ``forward``, None = every class),
    ``sharded`` (this rank holds a slice of the centres), ``incompatible_methods`` (training
    methods, by name, this classifier cannot train with, each with the reason; the module
    refuses them at setup).
    """

    subcenters: int = 1
    sample_rate: float = 1.0
    sparse_grad: bool = False
    last_index: Tensor | None = None
    sharded: bool = False
    incompatible_methods: ClassVar[dict[str, str]] = {}

    weight: nn.Parameter

    @abc.abstractmethod
    def forward(self, embeddings: Tensor, labels: Tensor) -> Scores:
        """Cosines ``[B', C']`` against (a sample of) the centres, the labels as their columns, and the rows scored."""

    @abc.abstractmethod
    def cross_entropy(self, logits: Tensor, labels: Tensor) -> Tensor:
        """Per-sample softmax cross-entropy ``[B]`` of this rank's rows; label ``-1`` gives 0."""

    @abc.abstractmethod
    def predict(self, cosine: Tensor) -> Tensor:
        """Nearest centre (column index, sub-centres pooled) of each row of ``cosine``."""

    def rows(self, values: Tensor) -> Tensor:
        """Per-sample ``values`` ``[B, ...]`` laid out as the rows of ``forward``'s cosine (unchanged here)."""
        return values

    def bind(self, backbone: nn.Module, head: "MarginHead") -> None:
        """Called by the module at setup, before a checkpoint is restored: check the run's
        ``backbone`` and ``head`` and build what this classifier owns from them; no-op here.

        Raises:
            ValueError: this classifier cannot train with that backbone or head (the message says why).
        """

    def prepare_batch(self, batch: "FaceBatch", backbone: nn.Module) -> None:
        """Called by the module on each training batch, after every method's ``transform_batch``
        and before the forward pass (a classifier sees embeddings only; this is where it can
        use the images); no-op here."""

    def setup(self, world_size: int, rank: int) -> None:
        """Prepare for ``world_size`` ranks (a sharded classifier keeps its slice); no-op here."""

    def ddp_ignore(self, prefix: str) -> list[str]:
        """Parameter and buffer names (under ``prefix``) that DDP must neither broadcast nor
        average (a sharded weight, a pool kept identical on every rank by construction); none here."""
        return []

    def save_optimizer_state(self, checkpoint: dict[str, Any], params: Sequence[nn.Parameter]) -> None:
        """Rewrite the optimizer state of ``weight`` in ``checkpoint`` to a layout any world size loads.

        Args:
            checkpoint: the Lightning checkpoint being saved (``optimizer_states`` edited in place).
            params: the first optimizer's parameters, flattened over its groups in order.
        """

    def load_optimizer_state(self, checkpoint: dict[str, Any]) -> None:
        """Turn what :meth:`save_optimizer_state` wrote back into this rank's layout (before restore)."""


def optimizer_state_of(checkpoint: dict[str, Any], index: int) -> dict[str, Any] | None:
    """The first optimizer's state entry for flattened parameter ``index`` (None if absent)."""
    states = checkpoint.get("optimizer_states")
    if not states:
        return None
    return states[0]["state"].get(index)
