"""A frozen distillation teacher loaded from a checkpoint of this project or an insightface ``backbone.pth``."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Teacher:
    """A frozen embedding network (eval mode, no gradients) plus its class centres when known.

    Deliberately not an ``nn.Module``: it lives on the distillation callback, so nothing
    registers it in the student's ``state_dict``, optimizer or DDP wrapper.

    Attributes:
        backbone: the teacher's embedding network.
        centres: the teacher classifier's weight ``[C·k, D]`` (``None`` for a bare backbone file).
        path: the file it was loaded from.
    """

    def __init__(self, backbone: nn.Module, centres: Tensor | None, path: Path) -> None:
        self.backbone = backbone.eval().requires_grad_(False)
        self.centres = None if centres is None else centres.detach().float()
        self.path = path
        self.embedding_dim = int(getattr(backbone, "embedding_dim"))

    @property
    def device(self) -> torch.device:
        return next(self.backbone.parameters()).device

    def to(self, device: torch.device) -> "Teacher":
        """Move the network and the centres to ``device`` (in place); returns self."""
        self.backbone.to(device)
        if self.centres is not None:
            self.centres = self.centres.to(device)
        return self

    @torch.no_grad()
    def embed(self, images: Tensor) -> Tensor:
        """Raw teacher embeddings ``[B, D]`` (runs under whatever autocast is active)."""
        self.backbone.eval()
        return self.backbone(images)

    def cosine(self, embeddings: Tensor, num_classes: int) -> Tensor:
        """Cosines ``[B, C]`` to the teacher centres, sub-centres pooled by max (as the classifier predicts)."""
        if self.centres is None:
            raise ValueError(f"teacher {self.path} has no classifier weight")
        cos = F.normalize(embeddings.float(), dim=1) @ F.normalize(self.centres, dim=1).t()
        k = self.centres.shape[0] // num_classes
        return cos.view(cos.shape[0], num_classes, k).amax(dim=2) if k > 1 else cos

    def class_means(self, num_classes: int) -> Tensor:
        """Normalised class centres ``[C, D]`` from the classifier (sub-centres averaged)."""
        if self.centres is None:
            raise ValueError(f"teacher {self.path} has no classifier weight")
        w = F.normalize(self.centres, dim=1)
        k = w.shape[0] // num_classes
        return F.normalize(w.view(num_classes, k, -1).mean(dim=1), dim=1)


def _mismatch(model: nn.Module, state: dict[str, Tensor]) -> str:
    """Describe how ``state`` differs from ``model``'s state_dict (first few keys of each kind)."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items() if k in state and state[k].shape != v.shape]
    parts = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch (file vs architecture)", shapes)):
        if keys:
            more = f" (+{len(keys) - 3} more)" if len(keys) > 3 else ""
            parts.append(f"{label}: {', '.join(keys[:3])}{more}")
    return "; ".join(parts)


def load_teacher(path: str | Path, backbone: nn.Module | None) -> Teacher:
    """Load and freeze a teacher.

    ``path`` is either a Lightning checkpoint written by ``fr fit`` (the backbone is read from
    ``backbone.*``; ``classifier.weight``, when present, becomes the teacher's centres) or an
    insightface-style ``backbone.pth`` (a bare state_dict). ``backbone`` is the teacher's
    architecture, freshly built; its weights are replaced with ``strict=True``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: no architecture given, the file is neither format, or it does not match the
            architecture (the message names the file and the first mismatched keys).
    """
    path = Path(path)
    if not str(path) or not path.is_file():
        raise FileNotFoundError(f"distillation teacher checkpoint {str(path)!r} does not exist")
    if backbone is None:
        raise ValueError(
            f"distillation teacher {path}: give its architecture as teacher_backbone "
            "(class_path/init_args, e.g. the backbone of the recipe that trained it)"
        )
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    centres: Tensor | None = None
    if isinstance(ckpt, dict) and isinstance(ckpt.get("state_dict"), dict):
        full = ckpt["state_dict"]
        state = {k[len("backbone.") :]: v for k, v in full.items() if k.startswith("backbone.")}
        centres = full.get("classifier.weight")
        if not state:
            raise ValueError(f"distillation teacher {path}: its state_dict has no 'backbone.*' parameters")
    elif isinstance(ckpt, dict) and ckpt and all(isinstance(v, Tensor) for v in ckpt.values()):
        state = ckpt
    else:
        raise ValueError(f"distillation teacher {path} is neither a checkpoint of fr fit nor a backbone state_dict")
    problem = _mismatch(backbone, state)
    if problem:
        raise ValueError(f"distillation teacher {path} does not match teacher_backbone {type(backbone).__name__}: {problem}")
    backbone.load_state_dict(state, strict=True)
    return Teacher(backbone, centres, path)
