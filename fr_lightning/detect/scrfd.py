"""SCRFD / RetinaFace-style 5-point face detection with onnxruntime.

A reconstruction of the behaviour of insightface's ``model_zoo/scrfd.py`` (the detector the
field aligned MS1MV3, WebFace and Glint360K with), written from its description, so that the
published ONNX files (``det_10g.onnx``, ``det_2.5g.onnx`` of the insightface model packs) give
the same boxes, scores and keypoints here:

1. Letterbox: the BGR photo is resized (bilinear) to fit the model's input, keeping its aspect
   ratio, and pasted at the top-left of a black canvas; ``det_scale = new_height / height``.
2. Blob: RGB, ``(pixel - 127.5) / 128``, NCHW float32.
3. Outputs, in this order: the score maps of each stride, then the box distances of each stride,
   then the keypoint distances of each stride (nine outputs for strides 8/16/32 with two
   anchors per cell; fifteen for strides 8..128 with one anchor).
4. Anchor centres of a stride ``s`` on an ``H/s x W/s`` grid are ``(x*s, y*s)`` in row-major
   order, each repeated once per anchor. Distances are in units of the stride: a box is
   ``(cx - l*s, cy - t*s, cx + r*s, cy + b*s)`` and keypoint ``k`` is ``(cx + dx_k*s, cy + dy_k*s)``.
5. Candidates with ``score >= threshold`` (insightface's default 0.5) are mapped back to photo
   pixels by dividing by ``det_scale``, sorted by score and thinned by greedy NMS at IoU 0.4
   (insightface's area convention: ``(x2 - x1 + 1) * (y2 - y1 + 1)``).

Differences: decoding runs in float64 (insightface decodes in float32; the two agree to well
under 1e-3 px), and equal scores keep their anchor order (a stable sort) where insightface's
order among ties is unspecified.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

__all__ = [
    "DEFAULT_INPUT_SIZE",
    "Detections",
    "SCRFD",
    "anchor_centres",
    "decode",
    "distance_to_boxes",
    "distance_to_points",
    "letterbox",
    "nms",
]

#: Input ``(width, height)`` for a graph whose input size is not fixed (insightface's ``det_size``).
DEFAULT_INPUT_SIZE = (640, 640)

#: Output count -> (strides, anchors per cell), for graphs with keypoint outputs.
_LAYOUTS: dict[int, tuple[tuple[int, ...], int]] = {9: ((8, 16, 32), 2), 15: ((8, 16, 32, 64, 128), 1)}


class Detections(NamedTuple):
    """Faces found in one photo, best score first, in photo pixels.

    Attributes:
        boxes: float32 ``[N, 4]`` ``(x1, y1, x2, y2)``.
        scores: float32 ``[N]``.
        landmarks: float32 ``[N, 5, 2]`` ``(x, y)`` in insightface order (left eye, right eye,
            nose tip, left and right mouth corner).
    """

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray

    def __len__(self) -> int:  # type: ignore[override]
        return len(self.scores)

    def take(self, keep: np.ndarray) -> Detections:
        """The detections at indices (or mask) ``keep``."""
        return Detections(self.boxes[keep], self.scores[keep], self.landmarks[keep])


def letterbox(image: np.ndarray, input_size: tuple[int, int]) -> tuple[np.ndarray, float]:
    """Fit ``image`` ``[H, W, 3]`` into ``input_size`` ``(width, height)`` keeping its aspect ratio.

    Returns:
        ``(canvas [height, width, 3] uint8, det_scale)``: the resized image sits at the top-left,
        the rest is black; a point ``p`` of the photo is at ``p * det_scale`` on the canvas.
    """
    in_w, in_h = int(input_size[0]), int(input_size[1])
    h, w = image.shape[:2]
    if h < 1 or w < 1:
        raise ValueError(f"cannot detect faces in an empty image ({w}x{h})")
    if h / w > in_h / in_w:
        new_h = in_h
        new_w = int(new_h / (h / w))
    else:
        new_w = in_w
        new_h = int(new_w * (h / w))
    new_w, new_h = max(new_w, 1), max(new_h, 1)
    det_scale = new_h / h
    canvas = np.zeros((in_h, in_w, 3), dtype=np.uint8)
    canvas[:new_h, :new_w] = cv2.resize(image, (new_w, new_h))
    return canvas, det_scale


def anchor_centres(height: int, width: int, stride: int, num_anchors: int) -> np.ndarray:
    """Anchor centres ``[height * width * num_anchors, 2]`` float64 ``(x, y)`` of one feature map.

    Row-major over the ``height x width`` grid, each cell's centre ``(x * stride, y * stride)``
    repeated ``num_anchors`` times (the layout of the score/box/keypoint rows).
    """
    ys, xs = np.mgrid[:height, :width]
    centres = np.stack([xs, ys], axis=-1).reshape(-1, 2).astype(np.float64) * stride
    return np.repeat(centres, num_anchors, axis=0)


def distance_to_boxes(centres: np.ndarray, distances: np.ndarray) -> np.ndarray:
    """Boxes ``[N, 4]`` ``(x1, y1, x2, y2)`` from centres ``[N, 2]`` and (left, top, right, bottom) distances ``[N, 4]``."""
    c = np.asarray(centres, np.float64)
    d = np.asarray(distances, np.float64)
    return np.stack([c[:, 0] - d[:, 0], c[:, 1] - d[:, 1], c[:, 0] + d[:, 2], c[:, 1] + d[:, 3]], axis=-1)


def distance_to_points(centres: np.ndarray, distances: np.ndarray) -> np.ndarray:
    """Points ``[N, K, 2]`` from centres ``[N, 2]`` and ``(dx, dy)`` offsets ``[N, 2K]``."""
    d = np.asarray(distances, np.float64).reshape(len(centres), -1, 2)
    return np.asarray(centres, np.float64)[:, None, :] + d


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float = 0.4) -> np.ndarray:
    """Greedy non-maximum suppression; indices of the kept boxes, best score first.

    A box is dropped when its IoU with a kept, higher-scoring box exceeds ``threshold``. Areas
    count the end pixel, ``(x2 - x1 + 1) * (y2 - y1 + 1)``, as insightface's detectors do.
    """
    boxes = np.asarray(boxes, np.float64)
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    keep: list[int] = []
    while order.size:
        i, rest = int(order[0]), order[1:]
        keep.append(i)
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        inter = w * h
        iou = inter / (areas[i] + areas[rest] - inter)
        order = rest[iou <= threshold]
    return np.asarray(keep, dtype=np.int64)


def decode(
    outputs: list[np.ndarray],
    input_size: tuple[int, int],
    det_scale: float,
    score_threshold: float = 0.5,
    nms_threshold: float = 0.4,
) -> Detections:
    """Detections in photo pixels from the raw outputs of an SCRFD graph.

    Args:
        outputs: the graph's outputs in its order: scores, boxes, keypoints per stride
            (9 outputs: strides 8/16/32, 2 anchors; 15: strides 8..128, 1 anchor). A leading
            batch axis of 1 is allowed.
        input_size: the network input ``(width, height)``.
        det_scale: the letterbox scale (photo -> input).
        score_threshold: keep candidates with ``score >= score_threshold``.
        nms_threshold: IoU above which a lower-scoring box is suppressed.
    """
    if len(outputs) not in _LAYOUTS:
        hint = " (a graph without keypoint outputs cannot align faces)" if len(outputs) in (6, 10) else ""
        raise ValueError(f"expected a 5-point detector with 9 or 15 outputs, got {len(outputs)}{hint}")
    strides, anchors = _LAYOUTS[len(outputs)]
    fmc = len(strides)
    in_w, in_h = int(input_size[0]), int(input_size[1])
    boxes, scores, points = [], [], []
    for k, stride in enumerate(strides):
        rows = (in_h // stride) * (in_w // stride) * anchors
        maps = []
        for which, cols in ((k, 1), (k + fmc, 4), (k + 2 * fmc, 10)):
            arr = np.asarray(outputs[which])
            if arr.size != rows * cols:
                raise ValueError(
                    f"output {which} (stride {stride}) has shape {list(arr.shape)}; expected {rows} x {cols} "
                    f"for a {in_w}x{in_h} input with {anchors} anchors per cell"
                )
            maps.append(arr.reshape(rows, cols))
        s, b, p = maps
        hit = np.flatnonzero(s[:, 0] >= score_threshold)
        if not hit.size:
            continue
        centres = anchor_centres(in_h // stride, in_w // stride, stride, anchors)[hit]
        scores.append(s[hit, 0].astype(np.float64))
        boxes.append(distance_to_boxes(centres, b[hit].astype(np.float64) * stride))
        points.append(distance_to_points(centres, p[hit].astype(np.float64) * stride))
    if not scores:
        return Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32))
    all_scores = np.concatenate(scores)
    all_boxes = np.concatenate(boxes) / det_scale
    all_points = np.concatenate(points) / det_scale
    keep = nms(all_boxes, all_scores, nms_threshold)
    return Detections(
        all_boxes[keep].astype(np.float32), all_scores[keep].astype(np.float32), all_points[keep].astype(np.float32)
    )


class SCRFD:
    """An SCRFD / RetinaFace 5-point detector (``det_10g.onnx``, ``det_2.5g.onnx``, ...) on onnxruntime.

    Args:
        path: the ONNX file (downloaded by the user; nothing is fetched at run time).
        score_threshold: default minimum score of a detection.
        nms_threshold: IoU above which a lower-scoring box is suppressed.
        input_size: network input ``(width, height)`` for a graph whose input size is not fixed
            (default 640x640); a fixed-size graph uses its own.
        threads: onnxruntime intra-op threads (None: its default).
    """

    def __init__(
        self,
        path: str | Path,
        score_threshold: float = 0.5,
        nms_threshold: float = 0.4,
        input_size: tuple[int, int] | None = None,
        threads: int | None = None,
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError as err:
            raise ImportError("face detection needs onnxruntime: pip install 'fr-lightning[export]'") from err
        self.source = Path(path)
        if not self.source.is_file():
            raise FileNotFoundError(f"detector model not found: {self.source}")
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = int(threads)
            opts.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(self.source), opts, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types
            raise ValueError(f"{self.source}: onnxruntime cannot load it: {err}") from err
        first = self.session.get_inputs()[0]
        shape = first.shape
        if len(shape) != 4 or shape[1] != 3:
            raise ValueError(f"{self.source}: input '{first.name}' has shape {shape}; expected [1, 3, H, W]")
        self.output_names = [o.name for o in self.session.get_outputs()]
        if len(self.output_names) not in _LAYOUTS:
            raise ValueError(
                f"{self.source}: {len(self.output_names)} outputs; expected a 5-point SCRFD/RetinaFace detector "
                "with 9 (strides 8/16/32) or 15 (strides 8..128) outputs: scores, boxes, keypoints"
            )
        self.input_name = first.name
        fixed = isinstance(shape[2], int) and isinstance(shape[3], int) and shape[2] > 0 and shape[3] > 0
        self.input_size: tuple[int, int] = (int(shape[3]), int(shape[2])) if fixed else tuple(input_size or DEFAULT_INPUT_SIZE)  # type: ignore[assignment]
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)

    def blob(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        """``(network input [1, 3, H, W] float32, det_scale)`` of a BGR uint8 photo."""
        canvas, det_scale = letterbox(image, self.input_size)
        rgb = canvas[:, :, ::-1].astype(np.float32)
        x = (rgb - np.float32(127.5)) / np.float32(128.0)
        return np.ascontiguousarray(x.transpose(2, 0, 1)[None]), det_scale

    def detect(self, image: np.ndarray, score_threshold: float | None = None) -> Detections:
        """Faces in a BGR uint8 photo ``[H, W, 3]``, best score first, in photo pixels."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected a BGR uint8 [H, W, 3] image, got {image.dtype} {list(image.shape)}")
        x, det_scale = self.blob(image)
        outputs = self.session.run(self.output_names, {self.input_name: x})
        threshold = self.score_threshold if score_threshold is None else float(score_threshold)
        try:
            return decode(outputs, self.input_size, det_scale, threshold, self.nms_threshold)
        except ValueError as err:
            raise ValueError(f"{self.source}: {err}") from None
