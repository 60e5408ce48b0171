"""Weight files: read them safely, tell what they hold, and load a backbone strictly with a useful error.

Two kinds of file hold a face-embedding network:

* a Lightning checkpoint written by ``fr fit`` (``state_dict`` with ``backbone.*``,
  ``classifier.*``, ``head.*`` and ``method_modules.*`` tensors, plus Lightning's bookkeeping);
* a bare backbone ``state_dict``: insightface's published ``backbone.pth`` files, or the
  ``backbone.pth`` that ``fr export`` writes (the same layout).

Everything is read with ``torch.load(weights_only=True)``. The same functions serve ``fr embed``,
``fr verify``, ``fr eval``, ``fr export`` (through :mod:`fr_lightning.deploy.checkpoint`) and
fine-tuning with ``init_from`` (:mod:`fr_lightning.deploy.init_from`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

__all__ = [
    "BackboneGuess",
    "WeightsFile",
    "backbone_description",
    "build_named_backbone",
    "describe_contents",
    "guess_backbone",
    "is_lightning_checkpoint",
    "load_backbone_state",
    "peek_weights",
    "read_weights",
    "state_mismatch",
]

#: Key Lightning writes into every checkpoint (absent from bare state dicts).
LIGHTNING_KEY = "pytorch-lightning_version"


@dataclass
class WeightsFile:
    """The tensors of a weight file.

    Attributes:
        path: the file.
        kind: ``"checkpoint"`` (Lightning, from ``fr fit``) or ``"backbone"`` (a bare backbone state_dict).
        state: the module's whole ``state_dict`` (checkpoint) or the backbone's (backbone file).
    """

    path: Path
    kind: str
    state: dict[str, Tensor]

    def backbone_state(self) -> dict[str, Tensor]:
        """The backbone's tensors, keys relative to the backbone (insightface ``backbone.pth`` layout)."""
        if self.kind == "backbone":
            return dict(self.state)
        out = {k[len("backbone.") :]: v for k, v in self.state.items() if k.startswith("backbone.")}
        if not out:
            raise ValueError(f"{self.path}: its state_dict has no 'backbone.*' tensors")
        return out

    def submodule_state(self, prefix: str) -> dict[str, Tensor]:
        """Tensors under ``prefix.`` of a checkpoint, keys relative to it (empty for a backbone file)."""
        if self.kind != "checkpoint":
            return {}
        cut = prefix + "."
        return {k[len(cut) :]: v for k, v in self.state.items() if k.startswith(cut)}


def _load(path: Path, mmap: bool = False) -> object:
    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
        except RuntimeError:
            if not mmap:
                raise
            return torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) files cannot be mapped
    except Exception as err:  # torch raises RuntimeError / UnpicklingError / zip errors
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"{path} cannot be read as PyTorch weights (torch.load with weights_only=True): {first}") from None


def read_weights(path: str | Path) -> WeightsFile:
    """Read a Lightning checkpoint or a bare backbone ``state_dict``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is neither (names the file and what it holds instead).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    data = _load(path)
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        return WeightsFile(path, "checkpoint", dict(data["state_dict"]))
    if isinstance(data, dict) and data and all(isinstance(k, str) and isinstance(v, Tensor) for k, v in data.items()):
        return WeightsFile(path, "backbone", dict(data))
    what = f"a dict with keys {sorted(map(str, data))[:5]}" if isinstance(data, dict) else type(data).__name__
    raise ValueError(f"{path} is neither a checkpoint of fr fit (no 'state_dict') nor a backbone state_dict (it holds {what})")


def peek_weights(path: str | Path) -> object:
    """The file's contents read memory-mapped (cheap for a large checkpoint; tensors load on access)."""
    return _load(Path(path), mmap=True)


def is_lightning_checkpoint(data: object) -> bool:
    """Whether loaded contents (:func:`peek_weights`) hold Lightning's checkpoint keys."""
    return isinstance(data, dict) and LIGHTNING_KEY in data and isinstance(data.get("state_dict"), dict)


def describe_contents(data: object) -> str:
    """A short account of what a weight file holds, for error messages."""
    if isinstance(data, dict) and data and all(isinstance(v, Tensor) for v in data.values()):
        guess = guess_backbone(data)  # type: ignore[arg-type]
        return f"a bare state_dict of {len(data)} tensors" + (f": {guess}" if guess else "")
    if isinstance(data, dict):
        return f"a dict with keys {sorted(map(str, data))[:5]}"
    return f"a {type(data).__name__}"


@dataclass
class BackboneGuess:
    """What a backbone state_dict was built as, read from its keys and shapes.

    Attributes:
        name: the registered backbone it fits (``iresnet50``, ``mobilefacenet``, ...), or a
            description when no registered depth matches.
        kwargs: constructor arguments read from the shapes (``embedding_dim``, ``width``, and
            for iResNet ``layers``).
        side: side of the last feature map; the input size is any ``S`` with ``ceil(S / 16) == side``.
    """

    name: str
    kwargs: dict[str, object]
    side: int

    def input_sizes(self) -> range:
        """Every input size the shapes allow."""
        return range(16 * (self.side - 1) + 1, 16 * self.side + 1)

    def default_input_size(self) -> int | None:
        """112 (insightface's crops) when the shapes allow it; else the only size allowed, or None."""
        sizes = self.input_sizes()
        return 112 if 112 in sizes else None

    def __str__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.kwargs.items())
        size = "112 px" if self.default_input_size() == 112 else f"{self.input_sizes()[0]}-{self.input_sizes()[-1]} px"
        return f"{self.name} ({args}; input {size})"


def _iresnet_guess(state: Mapping[str, Tensor]) -> BackboneGuess | None:
    from fr_lightning.backbones.iresnet import DEPTHS

    if not {"conv1.weight", "bn2.weight", "fc.weight", "features.weight"} <= set(state):
        return None
    blocks = []
    for stage in range(1, 5):
        heads = {int(k.split(".")[1]) for k in state if k.startswith(f"layer{stage}.") and k.split(".")[1].isdigit()}
        blocks.append(max(heads) + 1 if heads else 0)
    channels = int(state["bn2.weight"].shape[0])
    fc_in = int(state["fc.weight"].shape[1])
    side = math.isqrt(max(fc_in // max(channels, 1), 0))
    depth = next((d for d, layers in DEPTHS.items() if list(layers) == blocks), None)
    name = f"iresnet{depth}" if depth is not None else f"an iResNet with stage depths {blocks} (no registered depth)"
    kwargs: dict[str, object] = {"layers": blocks, "embedding_dim": int(state["fc.weight"].shape[0]), "width": channels / 512}
    return BackboneGuess(name, kwargs, side)


def _mobilefacenet_guess(state: Mapping[str, Tensor]) -> BackboneGuess | None:
    from fr_lightning.backbones import BACKBONES

    gdc, bn = "features.layers.0.layers.0.weight", "features.layers.3.weight"
    if not ("conv_sep.layers.0.weight" in state and gdc in state and bn in state):
        return None
    width = int(state[gdc].shape[0]) / 512
    side = int(state[gdc].shape[-1])
    emb = int(state[bn].shape[0])
    for name in ("mobilefacenet", "mobilefacenet_large"):
        try:
            candidate = BACKBONES[name](embedding_dim=emb, width=width, input_size=16 * side)
        except (ValueError, RuntimeError):
            continue
        if not state_mismatch(candidate.state_dict(), state):
            return BackboneGuess(name, {"embedding_dim": emb, "width": width}, side)
    return BackboneGuess("a MobileFaceNet of another block layout", {"embedding_dim": emb, "width": width}, side)


def guess_backbone(state: Mapping[str, Tensor]) -> BackboneGuess | None:
    """The backbone a state_dict fits, from its key names and shapes (None when it is neither family)."""
    return _iresnet_guess(state) or _mobilefacenet_guess(state)


def backbone_description(backbone: nn.Module) -> str:
    """``IResNet(layers=[2, 2, 2, 2], width=0.25, embedding_dim=128, input_size=56)`` from the attributes it has."""
    parts = []
    for attr in ("layers", "blocks", "width", "embedding_dim", "input_size"):
        value = getattr(backbone, attr, None)
        if isinstance(value, (int, float, tuple, list)) and not isinstance(value, bool):
            parts.append(f"{attr}={list(value) if isinstance(value, tuple) else value}")
    return f"{type(backbone).__name__}({', '.join(parts)})"


def _some(keys: list[str], n: int = 4) -> str:
    more = f" (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def state_mismatch(expected: Mapping[str, Tensor], state: Mapping[str, Tensor]) -> str:
    """How ``state`` differs from ``expected`` (missing keys, unexpected keys, shape differences); '' if it fits."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} {list(state[k].shape)} in the file vs {list(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys: {_some(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys: {_some(unexpected)}")
    if shapes:
        parts.append(f"{len(shapes)} shape differences: {_some(shapes, 3)}")
    return "; ".join(parts)


def load_backbone_state(backbone: nn.Module, state: Mapping[str, Tensor], source: str | Path) -> None:
    """Copy ``state`` into ``backbone`` strictly (every key, every shape).

    Raises:
        ValueError: the weights do not fit; the message names the missing and unexpected keys,
            the shape differences, the configured backbone and the backbone the file fits.
    """
    problem = state_mismatch(backbone.state_dict(), state)
    if problem:
        guess = guess_backbone(state)
        fits = f"these weights are {guess}" if guess else "these weights are neither an iResNet nor a MobileFaceNet"
        raise ValueError(f"{source} does not fit the configured backbone {backbone_description(backbone)}: {problem}. {fits}.")
    backbone.load_state_dict(dict(state), strict=True)


def build_named_backbone(name: str, state: Mapping[str, Tensor], source: str | Path, image_size: int | None = None) -> nn.Module:
    """The registered backbone ``name`` sized from ``state`` (embedding size, width), with ``state`` loaded strictly.

    Args:
        name: a key of :data:`fr_lightning.backbones.BACKBONES` (``iresnet50``, ``mobilefacenet``, ...).
        state: the backbone's tensors.
        source: the file (named in errors).
        image_size: the input side; default 112 when the weights allow it (insightface's crops).

    Raises:
        ValueError: unknown name, an input size the weights do not allow, or weights that do not fit.
    """
    from fr_lightning.backbones import BACKBONES

    if name not in BACKBONES:
        raise ValueError(f"unknown backbone '{name}'; registered: {', '.join(BACKBONES)}")
    guess = guess_backbone(state)
    kwargs: dict[str, object] = {}
    if guess is not None:
        kwargs = {k: v for k, v in guess.kwargs.items() if k in ("embedding_dim", "width")}
        if image_size is None:
            image_size = guess.default_input_size()
            if image_size is None:
                sizes = guess.input_sizes()
                raise ValueError(f"{source}: its shapes allow inputs of {sizes[0]}-{sizes[-1]} px; pass the one it was trained at with --image-size")
        elif image_size not in guess.input_sizes():
            sizes = guess.input_sizes()
            raise ValueError(f"{source}: --image-size {image_size} does not fit its shapes (they allow {sizes[0]}-{sizes[-1]} px)")
    if image_size is not None:
        kwargs["input_size"] = int(image_size)
    backbone = BACKBONES[name](**kwargs)  # type: ignore[arg-type]
    load_backbone_state(backbone, state, source)
    return backbone
