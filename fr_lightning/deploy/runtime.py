"""Embed faces with any model file a command takes: a training ``.ckpt``, a ``backbone.pth``
(``--backbone NAME``), an ``.onnx`` graph (``fr export``'s or insightface's) or a TorchScript file.

Every embedder takes float32 ``[B, 3, S, S]`` images normalised as ``(x - 127.5) / 127.5`` and
offers the raw embedding and the evaluation embedding used everywhere in this project: the
flip test (raw embedding of the image plus that of its mirror), L2-normalised. Calling an
embedder on uint8 RGB crops ``[B, S, S, 3]`` gives the raw embeddings of each crop and its
mirror, ``[B, 2, D]``, which the IJB and TinyFace evaluators pool themselves.
:func:`load_embedder` is the one entry point: ``fr embed``, ``fr verify`` and ``fr eval`` use it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["BackboneEmbedder", "CheckpointEmbedder", "Embedder", "OnnxEmbedder", "TorchScriptEmbedder", "load_embedder"]

#: Suffixes read as TorchScript files.
TORCHSCRIPT_SUFFIXES = (".pt", ".ts", ".torchscript")


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norm, 1e-12)).astype(np.float32)


class Embedder(ABC):
    """Base class: ``raw(images)`` is the model; ``flip_test(images)`` the evaluation embedding.

    Attributes:
        image_size: side ``S`` of the input images.
        source: the model file.
    """

    image_size: int
    source: Path

    @abstractmethod
    def raw(self, images: np.ndarray) -> np.ndarray:
        """Raw embeddings ``[B, D]`` float32 of normalised images ``[B, 3, S, S]``."""

    def flip_test(self, images: np.ndarray) -> np.ndarray:
        """L2-normalised ``raw(x) + raw(mirror(x))`` ``[B, D]`` (one model call on ``2B`` images)."""
        n = len(images)
        both = self.raw(np.concatenate([images, images[..., ::-1]]))
        return l2_normalize(both[:n].astype(np.float64) + both[n:])

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        """Raw embeddings ``[B, 2, D]`` float32 of uint8 RGB crops ``[B, S, S, 3]`` and their mirrors."""
        from fr_lightning.deploy.images import normalize

        x = normalize(crops)
        n = len(x)
        both = self.raw(np.concatenate([x, x[..., ::-1]]))
        return np.stack([both[:n], both[n:]], axis=1).astype(np.float32)


class OnnxEmbedder(Embedder):
    """onnxruntime session on the CPU provider (or providers you pass).

    Args:
        path: the ``.onnx`` file.
        threads: intra-op threads (None = onnxruntime's default).
        providers: onnxruntime execution providers.
    """

    def __init__(self, path: str | Path, threads: int | None = None, providers: Sequence[str] = ("CPUExecutionProvider",)) -> None:
        try:
            import onnxruntime as ort
        except ImportError as err:
            raise ImportError("running .onnx models needs onnxruntime: pip install 'fr-lightning[export]'") from err
        self.source = Path(path)
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
            opts.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(self.source), opts, providers=list(providers))
        except Exception as err:  # onnxruntime raises its own exception types
            raise ValueError(f"{self.source}: onnxruntime cannot load it: {err}") from err
        first = self.session.get_inputs()[0]
        shape = first.shape
        if len(shape) != 4 or not isinstance(shape[2], int) or shape[2] != shape[3] or shape[1] != 3:
            raise ValueError(f"{self.source}: input '{first.name}' has shape {shape}; expected [N, 3, S, S] with a fixed S")
        self.input_name = first.name
        self.image_size = int(shape[2])
        self.fixed_batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
        self.input_type = np.float16 if "float16" in first.type else np.float32
        # insightface's rule: a graph whose first nodes subtract and multiply takes raw pixels
        # (mean 0, std 1); any other takes (x - 127.5) / 127.5, this project's contract.
        from fr_lightning.deploy.insightface import insightface_view

        view = insightface_view(self.source)
        self.input_mean, self.input_std = float(view.input_mean), float(view.input_std)

    def raw(self, images: np.ndarray) -> np.ndarray:
        if (self.input_mean, self.input_std) != (127.5, 127.5):
            images = (np.asarray(images, np.float32) * np.float32(127.5) + np.float32(127.5) - np.float32(self.input_mean)) / np.float32(self.input_std)
        x = np.ascontiguousarray(images, dtype=self.input_type)
        if self.fixed_batch is None:
            return self.session.run(None, {self.input_name: x})[0].astype(np.float32)
        step = self.fixed_batch
        if len(x) % step:
            raise ValueError(f"{self.source} has a fixed batch size {step}; cannot run {len(x)} images")
        return np.concatenate([self.session.run(None, {self.input_name: x[i : i + step]})[0] for i in range(0, len(x), step)]).astype(np.float32)


class _TorchEmbedder(Embedder):
    """Shared torch execution (no autograd) on ``device``."""

    network: torch.nn.Module
    device: torch.device = torch.device("cpu")

    def raw(self, images: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).to(self.device)
            return self.network(x).float().cpu().numpy()


class TorchScriptEmbedder(_TorchEmbedder):
    """A TorchScript file written by ``fr export --format torchscript``.

    Args:
        path: the TorchScript file.
        image_size: input side (TorchScript files do not record it).
        device: where to run it.
    """

    def __init__(self, path: str | Path, image_size: int, device: str | torch.device = "cpu") -> None:
        self.source = Path(path)
        self.device = torch.device(device)
        self.network = torch.jit.load(str(self.source), map_location=self.device).eval()
        self.image_size = int(image_size)


class BackboneEmbedder(_TorchEmbedder):
    """A bare backbone ``state_dict`` (insightface's ``backbone.pth``, or ``fr export``'s) and its architecture.

    Args:
        path: the ``.pth`` file.
        backbone: registered backbone name (``iresnet50``, ``mobilefacenet``, ...).
        image_size: input side; default 112 when the weights allow it.
        device: where to run it.
    """

    def __init__(self, path: str | Path, backbone: str, image_size: int | None = None, device: str | torch.device = "cpu") -> None:
        from fr_lightning.deploy.weights import build_named_backbone, read_weights

        weights = read_weights(path)
        self.source = Path(path)
        self.device = torch.device(device)
        net = build_named_backbone(backbone, weights.backbone_state(), self.source, image_size)
        self.network = net.to(self.device).eval().requires_grad_(False)
        self.image_size = int(net.input_size)


class CheckpointEmbedder(_TorchEmbedder):
    """A training checkpoint, rebuilt by :func:`fr_lightning.deploy.checkpoint.load_model`.

    ``flip_test`` is the module's own ``predict_step`` (what ``fr predict`` returns).

    Args:
        path: the ``.ckpt`` file.
        config: the model description (default: the run's saved ``config.yaml``).
        source: what ``config`` came from (named in errors).
        device: where to run it.
    """

    def __init__(
        self, path: str | Path, config: Mapping[str, Any] | None = None, source: str | None = None, device: str | torch.device = "cpu"
    ) -> None:
        from fr_lightning.deploy.checkpoint import load_model

        self.source = Path(path)
        self.device = torch.device(device)
        self.loaded = load_model(path, config, source)
        self.loaded.module.to(self.device)
        self.network = self.loaded.network
        self.image_size = self.loaded.image_size

    def flip_test(self, images: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).to(self.device)
            return self.loaded.module.predict_step({"images": x}, 0).float().cpu().numpy()


#: Suffixes read as bare backbone state dicts.
BACKBONE_SUFFIXES = (".pth",)


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when available, else ``cpu``; anything else unchanged."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def load_embedder(
    path: str | Path,
    config: Mapping[str, Any] | None = None,
    source: str | None = None,
    threads: int | None = None,
    image_size: int | None = None,
    backbone: str | None = None,
    device: str = "cpu",
) -> Embedder:
    """An embedder for the model file ``path``, by its suffix.

    ``.ckpt`` (rebuilt from ``config``, default its run's config.yaml), ``.pth`` (a bare backbone
    state_dict; ``backbone`` names its architecture), ``.onnx`` (this project's graphs and
    insightface's recognition graphs) and TorchScript ``.pt``/``.ts`` (``image_size`` needed).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: an unknown suffix, a missing ``backbone``/``image_size``, or weights that do not fit.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} does not exist")
    if threads:
        torch.set_num_threads(int(threads))
    device = resolve_device(device)
    suffix = path.suffix.lower()
    if backbone is not None and suffix not in BACKBONE_SUFFIXES:
        raise ValueError(f"{path}: --backbone applies to a bare backbone state_dict (.pth), not to a '{suffix}' file")
    if config is not None and suffix != ".ckpt":
        raise ValueError(f"{path}: --config applies to a .ckpt of fr fit, not to a '{suffix}' file")
    if suffix == ".onnx":
        if device != "cpu":
            return OnnxEmbedder(path, threads, ("CUDAExecutionProvider", "CPUExecutionProvider"))
        return OnnxEmbedder(path, threads)
    if suffix == ".ckpt":
        return CheckpointEmbedder(path, config, source, device)
    if suffix in BACKBONE_SUFFIXES:
        if backbone is None:
            from fr_lightning.backbones import BACKBONES

            raise ValueError(f"{path}: a backbone.pth holds no architecture; name it with --backbone ({', '.join(BACKBONES)})")
        return BackboneEmbedder(path, backbone, image_size, device)
    if suffix in TORCHSCRIPT_SUFFIXES:
        if image_size is None:
            raise ValueError(f"{path}: a TorchScript file does not record its input size; pass --image-size")
        return TorchScriptEmbedder(path, image_size, device)
    raise ValueError(f"{path}: unknown model type '{suffix}' (expected .ckpt, .pth with --backbone, .onnx, or TorchScript .pt/.ts)")
