"""What insightface's ``model_zoo`` reads from an ONNX recognition graph (a transcription of its rules).

Reconstructed from insightface's ``python-package/insightface/model_zoo/model_zoo.py`` and
``arcface_onnx.py`` (read for facts; none of their code is used). The loader:

* routes a graph to ``ArcFaceONNX`` when it has fewer than 5 outputs, its first input's shape
  ``[N, C, H, W]`` has ``H == W``, ``H >= 112`` and ``H % 16 == 0`` (and it is not one of the
  192/96/128-px graphs the router sends elsewhere); older releases required exactly 112;
* infers the input normalisation from the names of the graph's first 8 nodes: if one name starts
  with ``Sub`` or ``_minus`` *and* one starts with ``Mul`` or ``_mul``, the graph is taken to
  normalise itself (mean 0, std 1); otherwise the caller normalises with mean 127.5, std 127.5;
* feeds the first input (by name) a float32 blob built by OpenCV from BGR crops:
  resize to ``(W, H)``, swap to RGB, subtract the mean, multiply by ``1 / std``, NCHW;
* requires exactly one output and returns it unchanged (no flip test, no L2 normalisation).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

__all__ = ["InsightfaceView", "check_insightface_contract", "insightface_blob", "insightface_view"]


@dataclass
class InsightfaceView:
    """How insightface's loader sees an ONNX graph.

    Attributes:
        input_mean: mean it subtracts from pixel values (127.5 = our contract).
        input_std: std it divides by (127.5 = our contract).
        input_name: name of the first graph input.
        input_shape: that input's shape (ints, or strings for dynamic axes).
        input_size: ``(W, H)`` it resizes crops to.
        output_names: names of all graph outputs (it requires exactly one).
        routed: whether ``model_zoo.get_model`` routes the graph to ``ArcFaceONNX``.
        first_nodes: names of the first 8 graph nodes (what the mean/std rule looks at).
    """

    input_mean: float
    input_std: float
    input_name: str
    input_shape: list[int | str]
    input_size: tuple[int | str, int | str]
    output_names: list[str]
    routed: bool
    first_nodes: list[str]


def _dims(value_info: object) -> list[int | str]:
    dims = value_info.type.tensor_type.shape.dim  # type: ignore[attr-defined]
    return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in dims]


def insightface_view(path: str | Path) -> InsightfaceView:
    """Apply insightface's routing and mean/std rules to the ONNX graph at ``path``."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    graph = model.graph
    names = [node.name for node in graph.node[:8]]
    find_sub = any(n.startswith("Sub") or n.startswith("_minus") for n in names)
    find_mul = any(n.startswith("Mul") or n.startswith("_mul") for n in names)
    mean, std = (0.0, 1.0) if (find_sub and find_mul) else (127.5, 127.5)
    initializers = {init.name for init in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if not inputs:
        raise ValueError(f"{path}: the graph has no input")
    shape = _dims(inputs[0])
    outputs = [o.name for o in graph.output]
    routed = False
    if len(shape) == 4 and len(outputs) < 5:
        h, w = shape[2], shape[3]
        special = (h, w) in ((192, 192), (96, 96)) or (len(inputs) == 2 and (h, w) == (128, 128))
        routed = isinstance(h, int) and h == w and h >= 112 and h % 16 == 0 and not special
    size = (shape[3], shape[2]) if len(shape) == 4 else ("?", "?")
    return InsightfaceView(mean, std, inputs[0].name, shape, size, outputs, routed, names)


def check_insightface_contract(path: str | Path) -> InsightfaceView:
    """Raise ValueError unless insightface's ``ArcFaceONNX`` would use the graph as this project does.

    Checked: mean/std inferred as 127.5/127.5, one output, a 4-D input ``[N, 3, S, S]`` with a
    static square image size. Routing by ``model_zoo.get_model`` additionally needs ``S >= 112``
    and ``S % 16 == 0``; it is reported in the view, not required (small CPU recipes use 56 px).
    """
    view = insightface_view(path)
    problems = []
    if (view.input_mean, view.input_std) != (127.5, 127.5):
        problems.append(f"its first nodes {view.first_nodes} look like in-graph normalisation (mean 0, std 1)")
    if len(view.output_names) != 1:
        problems.append(f"it has {len(view.output_names)} outputs (insightface needs exactly 1)")
    s = view.input_shape
    if len(s) != 4 or s[1] != 3 or not isinstance(s[2], int) or s[2] != s[3]:
        problems.append(f"its input shape {s} is not [N, 3, S, S] with a fixed S")
    if problems:
        raise ValueError(f"{path} breaks insightface's ArcFaceONNX contract: " + "; ".join(problems))
    return view


def insightface_blob(bgr_crops: list[np.ndarray], view: InsightfaceView) -> np.ndarray:
    """The float32 NCHW blob insightface's ``get_feat`` feeds the graph, from BGR uint8 crops."""
    w, h = view.input_size
    out = []
    for img in bgr_crops:
        if img.shape[:2] != (h, w):
            img = cv2.resize(img, (int(w), int(h)))
        rgb = img[..., ::-1].astype(np.float32)
        out.append(((rgb - np.float32(view.input_mean)) * np.float32(1.0 / view.input_std)).transpose(2, 0, 1))
    return np.ascontiguousarray(np.stack(out), dtype=np.float32)
