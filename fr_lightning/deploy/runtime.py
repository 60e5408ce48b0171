"""Embed normalised images with an ``.onnx`` graph, a TorchScript file or a training checkpoint.

Every embedder takes float32 ``[B, 3, S, S]`` images normalised as ``(x - 127.5) / 127.5`` and
offers the raw embedding and the evaluation embedding used everywhere in this project: the
flip test (raw embedding of the image plus that of its mirror), L2-normalised.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

__all__ = ["CheckpointEmbedder", "Embedder", "OnnxEmbedder", "TorchScriptEmbedder", "load_embedder"]

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

    def raw(self, images: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(images, dtype=self.input_type)
        if self.fixed_batch is None:
            return self.session.run(None, {self.input_name: x})[0].astype(np.float32)
        step = self.fixed_batch
        if len(x) % step:
            raise ValueError(f"{self.source} has a fixed batch size {step}; cannot run {len(x)} images")
        return np.concatenate([self.session.run(None, {self.input_name: x[i : i + step]})[0] for i in range(0, len(x), step)]).astype(np.float32)


class _TorchEmbedder(Embedder):
    """Shared torch execution (CPU, no autograd)."""

    network: torch.nn.Module

    def raw(self, images: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self.network(torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))).float().numpy()


class TorchScriptEmbedder(_TorchEmbedder):
    """A TorchScript file written by ``fr export --format torchscript``.

    Args:
        path: the TorchScript file.
        image_size: input side (TorchScript files do not record it).
    """

    def __init__(self, path: str | Path, image_size: int) -> None:
        self.source = Path(path)
        self.network = torch.jit.load(str(self.source), map_location="cpu").eval()
        self.image_size = int(image_size)


class CheckpointEmbedder(_TorchEmbedder):
    """A training checkpoint, rebuilt with its run's ``config.yaml`` (or ``configs``).

    ``flip_test`` is the module's own ``predict_step`` (what ``fr predict`` returns).

    Args:
        path: the ``.ckpt`` file.
        configs: YAML files describing the model (default: the run's saved config).
    """

    def __init__(self, path: str | Path, configs: Sequence[str | Path] = ()) -> None:
        from fr_lightning.deploy.checkpoint import load_model

        self.source = Path(path)
        self.loaded = load_model(path, configs)
        self.network = self.loaded.network
        self.image_size = self.loaded.image_size

    def flip_test(self, images: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
            return self.loaded.module.predict_step({"images": x}, 0).float().numpy()


def load_embedder(path: str | Path, configs: Sequence[str | Path] = (), threads: int | None = None, image_size: int | None = None) -> Embedder:
    """An embedder for ``path`` by its suffix: ``.onnx``, ``.ckpt`` or TorchScript (``.pt``/``.ts``).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: an unknown suffix, or TorchScript without ``image_size``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} does not exist")
    if threads:
        torch.set_num_threads(int(threads))
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return OnnxEmbedder(path, threads)
    if suffix == ".ckpt":
        return CheckpointEmbedder(path, configs)
    if suffix in TORCHSCRIPT_SUFFIXES:
        if image_size is None:
            raise ValueError(f"{path}: a TorchScript file does not record its input size; pass --image-size")
        return TorchScriptEmbedder(path, image_size)
    raise ValueError(f"{path}: unknown model type '{suffix}' (expected .onnx, .ckpt or a TorchScript .pt/.ts)")
