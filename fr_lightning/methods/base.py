"""The `Method` contract: a Lightning callback whose hooks run inside the training step."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, TypeVar

import lightning.pytorch as pl
from torch import Tensor, nn

from fr_lightning.batch import FaceBatch, StepContext

if TYPE_CHECKING:
    from fr_lightning.module import FaceRecognitionModule

#: What a method may declare in :attr:`Method.needs`, with what provides it. Checked at setup.
NEEDS: dict[str, str] = {
    "features": "the backbone's last-stage feature map (a `FaceBackbone`: `forward_features`)",
    "landmarks": "5-point landmarks in the training batch",
    "group": "a demographic group label in the training batch",
    "index": "the dataset index of each sample in the training batch",
    "full_logits": "logits over every class (FullFC, or PartialFC with sample_rate 1 on one device)",
    "local_logits": "each sample's logits on its own rank (centres not sharded across ranks)",
    "teacher": "a frozen teacher network (its checkpoint file)",
    "second_network": "a second trainable network (memory and time for two)",
}

#: Every method class by its :attr:`Method.name` (filled by :func:`register`); the tests that
#: stack methods pairwise enumerate it, so a new method is tested by being registered.
METHODS: dict[str, type["Method"]] = {}

M = TypeVar("M", bound=type["Method"])


def register(cls: M) -> M:
    """Class decorator: add a method to :data:`METHODS` (its ``name`` and ``order`` must be unique)."""
    for other in METHODS.values():
        if other is not cls and (other.name == cls.name or other.order == cls.order):
            raise ValueError(f"methods {other.__name__} and {cls.__name__} share a name or an order; both must be unique")
    METHODS[cls.name] = cls
    return cls


class Method(pl.Callback):
    """Base class of every training method (lowres, poseface, gabn, kd, coteaching).

    A method is listed in ``trainer.callbacks``. At ``setup`` the module collects every
    ``Method`` among the trainer's callbacks, sorts them by :attr:`order`, checks
    :attr:`requires` / :attr:`conflicts_with` and each method's :meth:`needs` (before the first
    step; an error names the method and what is missing), and registers what :meth:`build`
    returns in ``module.method_modules[name]`` (so those parameters join the optimizer, DDP and
    checkpoints). Each training step the module builds a :class:`~fr_lightning.batch.StepContext`
    and calls, method by method in ``order``:

    1. :meth:`transform_batch` on the batch (e.g. add a low-resolution view),
    2. :meth:`target_margins` (summed into ``ctx.target_margin``), then the training forward
       pass (:mod:`fr_lightning.criterion`) into ``ctx.out``,
    3. :meth:`sample_weights` (multiplied together into ``ctx.weights``; the one reducer then
       averages the per-sample loss with them),
    4. :meth:`loss_terms` (added to the total, logged as ``train/loss/<name>/<term>``).

    Every :meth:`sample_weights` runs before any :meth:`loss_terms`, so a loss term can use
    the combined weights of all methods. Values handed from one hook to a later one live in the
    context, never on the method. Outside training, :meth:`embedding_network` lets a method
    choose the network validation, test, predict and export embed with. Frozen helpers (a KD
    teacher) live on the callback, never in the module.
    """

    #: One name for the method: recipe, fragment, module, ``method_modules`` key and log keys.
    name: ClassVar[str] = "method"
    #: Position among stacked methods (lower runs first); registered methods have distinct orders.
    order: ClassVar[int] = 100
    #: Method names (``name``) that must also be listed.
    requires: ClassVar[tuple[str, ...]] = ()
    #: Method names (``name``) that cannot be listed together with this one.
    conflicts_with: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:
            cls.name = cls.__name__.lower()

    def needs(self) -> frozenset[str]:
        """What this configuration of the method needs (keys of :data:`NEEDS`)."""
        return frozenset()

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

    def sample_weights(self, ctx: StepContext, module: "FaceRecognitionModule") -> Tensor | None:
        """Per-sample weights or a 0/1 mask ``[B]`` for the supervised loss (None = all ones)."""
        return None

    def loss_terms(self, ctx: StepContext, module: "FaceRecognitionModule") -> dict[str, Tensor]:
        """Extra scalar loss terms; each is added to the total and logged."""
        return {}

    def embedding_network(self, module: "FaceRecognitionModule") -> nn.Module | None:
        """The evaluation embedding (``images -> [B, D]``) this method defines; None = the backbone."""
        return None

    def parts(self, module: "FaceRecognitionModule") -> nn.Module:
        """This method's registered trainable parts (raises if :meth:`build` returned None)."""
        return module.method_modules[self.name]


def check_needs(methods: list[Method], available: dict[str, bool], why: dict[str, str] | None = None) -> None:
    """Raise for the first method whose declared need is known to be unavailable.

    Args:
        methods: the stacked methods.
        available: need -> whether this run provides it; needs not listed are not checked here
            (a method checks those itself in :meth:`Method.build`, e.g. KD loads its teacher).
        why: need -> the part of this run that rules it out (named in the error), where known.

    Raises:
        ValueError: naming the method, the need and what would provide it.
    """
    for m in methods:
        unknown = set(m.needs()) - set(NEEDS)
        if unknown:
            raise ValueError(f"method {m.name} declares unknown needs {sorted(unknown)}; known: {sorted(NEEDS)}")
        for need in sorted(m.needs()):
            if available.get(need, True) is False:
                because = f" ({why[need]})" if why and need in why else ""
                raise ValueError(f"method {m.name} needs {need}: {NEEDS[need]}, which this run does not provide{because}.")


def check_methods(methods: list[Method]) -> list[Method]:
    """Sort methods by ``order`` and validate ``requires`` / ``conflicts_with`` and ties.

    Raises:
        ValueError: naming the methods involved when a requirement is missing, two methods
            conflict or share an order, or a method is listed twice.
    """
    names = [m.name for m in methods]
    for name in set(names):
        if names.count(name) > 1:
            raise ValueError(f"trainer.callbacks lists the method {name} {names.count(name)} times; list it once.")
    for m in methods:
        for req in m.requires:
            if req not in names:
                raise ValueError(f"method {m.name} requires {req}; add it to trainer.callbacks.")
        for other in m.conflicts_with:
            if other in names:
                raise ValueError(f"method {m.name} cannot be combined with {other}.")
    ordered = sorted(methods, key=lambda m: m.order)
    for a, b in zip(ordered, ordered[1:]):
        if a.order == b.order:
            raise ValueError(
                f"methods {a.name} and {b.name} both have order {a.order}: their hooks would run in an "
                "arbitrary order; give one of them another order."
            )
    return ordered
