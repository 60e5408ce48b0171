"""The `Method` contract: a Lightning callback whose hooks run inside the training step."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import lightning.pytorch as pl
from torch import Tensor, nn

from fr_lightning.batch import FaceBatch

if TYPE_CHECKING:
    from fr_lightning.module import FaceRecognitionModule, StepOutput


class Method(pl.Callback):
    """Base class of every training method (low-res, PoseFace, GABN, KD, co-teaching, ...).

    A method is listed in ``trainer.callbacks``. At ``setup`` the module collects every
    ``Method`` among the trainer's callbacks, sorts them by ``order``, checks ``requires`` /
    ``conflicts_with`` and registers what :meth:`build` returns in ``module.method_modules``
    (so those parameters join the optimizer, DDP and checkpoints). During ``training_step``
    the module calls, in ``order``:

    1. :meth:`transform_batch` on the batch (e.g. build a low-resolution view),
    2. :meth:`target_margins` (summed), then the forward pass (backbone -> classifier ->
       target cosine minus the per-sample margin -> head -> per-sample loss),
    3. :meth:`sample_weights` (multiplied together, then the one reducer averages),
    4. :meth:`loss_terms` (added to the total, logged as ``train/loss/<name>/<term>``).

    Frozen helpers (a distillation teacher) live on the callback, never in the module.
    """

    #: Position among stacked methods (lower runs first).
    order: ClassVar[int] = 100
    #: Method class names that must also be listed.
    requires: ClassVar[tuple[str, ...]] = ()
    #: Method class names that cannot be listed together with this one.
    conflicts_with: ClassVar[tuple[str, ...]] = ()

    @property
    def name(self) -> str:
        """Key in ``method_modules`` and in the logged loss names (the class name, lower case)."""
        return type(self).__name__.lower()

    def build(self, module: "FaceRecognitionModule") -> nn.Module | None:
        """Return this method's trainable parts (or None). Called once at setup."""
        return None

    def transform_batch(self, batch: FaceBatch, module: "FaceRecognitionModule") -> FaceBatch:
        """Return the batch the forward pass sees (never edit ``batch`` in place)."""
        return batch

    def target_margins(self, batch: FaceBatch, module: "FaceRecognitionModule") -> Tensor | None:
        """Extra additive cosine margin ``[B]`` on each sample's target class (None = none).

        Subtracted from the target cosine before the head (on top of the head's own margin);
        margins from several methods add up. Used e.g. by PoseFace's pose-dependent margin.
        """
        return None

    def sample_weights(self, batch: FaceBatch, out: "StepOutput", module: "FaceRecognitionModule") -> Tensor | None:
        """Per-sample weights or a 0/1 mask ``[B]`` for the supervised loss (None = all ones)."""
        return None

    def loss_terms(self, batch: FaceBatch, out: "StepOutput", module: "FaceRecognitionModule") -> dict[str, Tensor]:
        """Extra scalar loss terms; each is added to the total and logged."""
        return {}

    def parts(self, module: "FaceRecognitionModule") -> nn.Module:
        """This method's registered trainable parts (raises if :meth:`build` returned None)."""
        return module.method_modules[self.name]


def check_methods(methods: list[Method]) -> list[Method]:
    """Sort methods by ``order`` and validate ``requires`` / ``conflicts_with``.

    Raises:
        ValueError: naming the methods involved when a requirement is missing, two methods
            conflict, or a method is listed twice.
    """
    names = [type(m).__name__ for m in methods]
    for name in set(names):
        if names.count(name) > 1:
            raise ValueError(f"trainer.callbacks lists the method {name} {names.count(name)} times; list it once.")
    for m in methods:
        for req in m.requires:
            if req not in names:
                raise ValueError(f"method {type(m).__name__} requires {req}; add it to trainer.callbacks.")
        for other in m.conflicts_with:
            if other in names:
                raise ValueError(f"method {type(m).__name__} cannot be combined with {other}.")
    return sorted(methods, key=lambda m: m.order)
