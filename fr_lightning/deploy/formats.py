"""Write an embedding network as ONNX or TorchScript, and check the file against PyTorch.

Graph contract (both formats): one input ``[N, 3, S, S]`` float32 RGB, normalised outside the
graph as ``(x - 127.5) / 127.5``, ``N`` dynamic; one output ``[N, D]`` float32, the raw
(unnormalised, not flip-summed) embedding. With ``fp16`` the network computes in float16 but
the input and output stay float32 (casts at both ends), so callers do not change.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

__all__ = [
    "INPUT_NAME",
    "OUTPUT_NAME",
    "ParityReport",
    "compare",
    "export_onnx",
    "export_torchscript",
    "reference_images",
    "run_onnx",
]

INPUT_NAME = "input"
OUTPUT_NAME = "embedding"
#: Lowest ONNX opset the contract promises; the exporter writes its native opset (18) by default.
MIN_OPSET = 17


class _Half(nn.Module):
    """Runs ``net`` in float16 between float32 input and output casts."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = copy.deepcopy(net).half()
        self.embedding_dim = getattr(net, "embedding_dim", None)

    def forward(self, images: Tensor) -> Tensor:
        return self.net(images.half()).float()


def deploy_network(net: nn.Module, fp16: bool = False) -> nn.Module:
    """``net`` in eval mode, wrapped for float16 compute when ``fp16``."""
    net = net.eval()
    return _Half(net).eval() if fp16 else net


@contextlib.contextmanager
def _quiet_exporter():
    """Silence the exporter's progress prints and its warnings about optional packages."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._export", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def export_onnx(net: nn.Module, path: str | Path, image_size: int, opset: int = 18, fp16: bool = False) -> Path:
    """Export ``net`` (images -> raw embeddings) to a single-file ONNX graph with a dynamic batch axis.

    Args:
        net: the embedding network (put in eval mode here).
        path: output ``.onnx`` file.
        image_size: side ``S`` of the input images.
        opset: ONNX opset (>= 17).
        fp16: compute in float16 (float32 input and output).
    """
    if opset < MIN_OPSET:
        raise ValueError(f"opset {opset} is too old: the deployment contract needs opset >= {MIN_OPSET}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = deploy_network(net, fp16)
    example = torch.zeros(2, 3, image_size, image_size)
    with torch.no_grad(), _quiet_exporter():
        program = torch.onnx.export(
            model,
            (example,),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            opset_version=opset,
            dynamo=True,
            external_data=False,
        )
    program.save(str(path), external_data=False)
    _add_metadata(path, image_size, fp16)
    return path


def _add_metadata(path: Path, image_size: int, fp16: bool) -> None:
    """Record the input contract in the graph's metadata (readable by any ONNX tool)."""
    import onnx

    model = onnx.load(str(path))
    meta = {
        "fr-lightning.input": f"RGB float32 NCHW [N, 3, {image_size}, {image_size}], (pixel - 127.5) / 127.5",
        "fr-lightning.output": "raw embedding [N, D] float32; not flip-summed, not L2-normalised",
        "fr-lightning.compute": "float16" if fp16 else "float32",
    }
    del model.metadata_props[:]
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))


def export_torchscript(net: nn.Module, path: str | Path, image_size: int, fp16: bool = False) -> Path:
    """Trace ``net`` to TorchScript (the batch size stays free: no op depends on it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = deploy_network(net, fp16)
    example = torch.zeros(2, 3, image_size, image_size)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarning on the input-shape check; deprecation notice
        traced = torch.jit.trace(model, (example,), check_trace=False)
        traced.save(str(path))
    return path


def run_onnx(path: str | Path, images: np.ndarray, threads: int | None = None) -> np.ndarray:
    """Run an ONNX graph on onnxruntime's CPU provider (one call, the whole batch)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return session.run(None, {name: np.ascontiguousarray(images, dtype=np.float32)})[0]


def reference_images(image_size: int, count: int = 8) -> np.ndarray:
    """``count`` synthetic faces (RGB uint8 ``[count, S, S, 3]``, fixed seed) for export checks."""
    from fr_lightning.data import SyntheticPairs

    pairs = SyntheticPairs("export-check", pairs=max(20, (count + 1) // 2), set_seed=12345).build(image_size)
    return pairs.load(np.arange(count))


@dataclass
class ParityReport:
    """Agreement between an exported model and PyTorch on the same batch.

    Attributes:
        min_cosine: smallest per-image cosine between the two embeddings.
        max_abs_diff: largest absolute element difference.
        max_abs_ref: largest absolute element of the PyTorch embedding (the scale of the numbers).
    """

    min_cosine: float
    max_abs_diff: float
    max_abs_ref: float

    def ok(self, min_cosine: float, max_abs: float) -> bool:
        """Cosine at least ``min_cosine`` and max |difference| at most ``max_abs`` (times the scale when it exceeds 1)."""
        return self.min_cosine >= min_cosine and self.max_abs_diff <= max_abs * max(1.0, self.max_abs_ref)

    def __str__(self) -> str:
        return f"min cosine {self.min_cosine:.7f}, max |diff| {self.max_abs_diff:.2e} (max |value| {self.max_abs_ref:.3g})"


def compare(reference: np.ndarray, other: np.ndarray) -> ParityReport:
    """Per-image cosine and element-wise difference of two ``[N, D]`` embedding batches."""
    ref = np.asarray(reference, dtype=np.float64)
    out = np.asarray(other, dtype=np.float64)
    if ref.shape != out.shape:
        raise ValueError(f"embedding shapes differ: PyTorch {ref.shape}, exported {out.shape}")
    num = (ref * out).sum(1)
    den = np.linalg.norm(ref, axis=1) * np.linalg.norm(out, axis=1)
    cos = np.where(den > 0, num / np.maximum(den, 1e-300), 1.0)
    return ParityReport(float(cos.min()), float(np.abs(ref - out).max()), float(np.abs(ref).max()))
