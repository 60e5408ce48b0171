"""SCRFD decoding, NMS and face picking against hand-computed answers and a float64 reference.

The detector graphs here are tiny ONNX graphs with the SCRFD output layout (scores, boxes and
keypoints per stride) whose outputs are tables chosen by a code patch in the photo's top-left
corner (one table for the unit tests, one per photo in the folder test). They prove the
letterbox, the blob, the decoding, the thresholds, NMS and the picking; they are no trained
detector.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from fr_lightning.detect import SCRFD, Detections, anchor_centres, decode, letterbox, nms, pick_face, screen  # noqa: E402

STRIDES_9 = (8, 16, 32)
CODE_STEP = 10  # photo k carries grey level 10 k + 5 in its top-left patch


def layout_rows(input_size: tuple[int, int], strides: tuple[int, ...] = STRIDES_9, anchors: int = 2) -> list[int]:
    """Rows of each stride's maps for an input ``(width, height)``."""
    return [(input_size[1] // s) * (input_size[0] // s) * anchors for s in strides]


def empty_tables(input_size: tuple[int, int], photos: int = 1, strides: tuple[int, ...] = STRIDES_9, anchors: int = 2) -> list[np.ndarray]:
    """Zero tables ``[photos, rows, cols]`` in output order: scores, boxes, keypoints per stride."""
    rows = layout_rows(input_size, strides, anchors)
    return [np.zeros((photos, r, c), np.float32) for c in (1, 4, 10) for r in rows]


def keyed_detector(path: Path, tables: list[np.ndarray], input_size: tuple[int, int], batch_axis: bool = False) -> Path:
    """Write an ONNX graph with SCRFD's output layout: output ``i`` is ``tables[i][code]``.

    ``code`` is read from the blob's top-left value: ``floor((v * 128 + 127.5) / 10)``, clipped to
    the table count (a grey patch of level ``10 k + 5`` selects photo ``k``).
    """
    w, h = input_size
    photos = tables[0].shape[0]
    const = lambda name, arr: numpy_helper.from_array(np.asarray(arr), name)  # noqa: E731
    inits = [
        const("starts", np.zeros(4, np.int64)),
        const("ends", np.ones(4, np.int64)),
        const("scalar", np.zeros(0, np.int64)),
        const("std", np.float32(128.0)),
        const("mean", np.float32(127.5)),
        const("step", np.float32(CODE_STEP)),
        const("lo", np.float32(0.0)),
        const("hi", np.float32(photos - 1)),
    ]
    nodes = [
        helper.make_node("Slice", ["input.1", "starts", "ends"], ["corner"]),
        helper.make_node("Reshape", ["corner", "scalar"], ["v"]),
        helper.make_node("Mul", ["v", "std"], ["v1"]),
        helper.make_node("Add", ["v1", "mean"], ["pixel"]),
        helper.make_node("Div", ["pixel", "step"], ["q"]),
        helper.make_node("Floor", ["q"], ["qf"]),
        helper.make_node("Clip", ["qf", "lo", "hi"], ["qc"]),
        helper.make_node("Cast", ["qc"], ["code"], to=TensorProto.INT64),
    ]
    outputs = []
    for i, table in enumerate(tables):
        inits.append(const(f"table{i}", table.astype(np.float32)))
        name = f"out{i}"
        if batch_axis:
            inits.append(const(f"axes{i}", np.zeros(1, np.int64)))
            nodes.append(helper.make_node("Gather", [f"table{i}", "code"], [f"g{i}"], axis=0))
            nodes.append(helper.make_node("Unsqueeze", [f"g{i}", f"axes{i}"], [name]))
            shape = [1, *table.shape[1:]]
        else:
            nodes.append(helper.make_node("Gather", [f"table{i}", "code"], [name], axis=0))
            shape = list(table.shape[1:])
        outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, shape))
    graph = helper.make_graph(
        nodes, "keyed_scrfd", [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, h, w])], outputs, inits
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def place(
    tables: list[np.ndarray],
    photo: int,
    input_size: tuple[int, int],
    stride: int,
    row: int,
    box: np.ndarray,
    points: np.ndarray,
    score: float,
) -> None:
    """Write a detection (box and points in network-input pixels) at anchor row ``row`` of ``stride``."""
    k = STRIDES_9.index(stride)
    centre = anchor_centres(input_size[1] // stride, input_size[0] // stride, stride, 2)[row]
    tables[k][photo, row, 0] = score
    tables[k + 3][photo, row] = np.r_[centre - box[:2], box[2:] - centre] / stride
    tables[k + 6][photo, row] = ((np.asarray(points, np.float64) - centre) / stride).reshape(-1)


# --------------------------------------------------------------------------- reference (float64)


def reference_detect(session: object, image: np.ndarray, input_size: tuple[int, int], threshold: float, nms_iou: float = 0.4):
    """insightface's SCRFD procedure transcribed independently, in float64, one anchor at a time."""
    h, w = image.shape[:2]
    in_w, in_h = input_size
    if float(h) / w > float(in_h) / in_w:
        nh = in_h
        nw = int(nh / (float(h) / w))
    else:
        nw = in_w
        nh = int(nw * (float(h) / w))
    scale = float(nh) / h
    canvas = np.zeros((in_h, in_w, 3), np.uint8)
    canvas[:nh, :nw] = cv2.resize(image, (nw, nh))
    blob = ((canvas[:, :, [2, 1, 0]].astype(np.float64) - 127.5) / 128.0).transpose(2, 0, 1)[None].astype(np.float32)
    outs = session.run(None, {session.get_inputs()[0].name: blob})
    cands = []
    for k, s in enumerate(STRIDES_9):
        sc = outs[k].reshape(-1)
        bb = outs[k + 3].reshape(-1, 4).astype(np.float64)
        kp = outs[k + 6].reshape(-1, 10).astype(np.float64)
        i = 0
        for y in range(in_h // s):
            for x in range(in_w // s):
                for _ in range(2):
                    if sc[i] >= threshold:
                        cx, cy = x * s, y * s
                        l, t, r, b = bb[i] * s
                        box = [(cx - l) / scale, (cy - t) / scale, (cx + r) / scale, (cy + b) / scale]
                        pts = [((cx + kp[i, 2 * j] * s) / scale, (cy + kp[i, 2 * j + 1] * s) / scale) for j in range(5)]
                        cands.append((float(sc[i]), box, pts))
                    i += 1
    cands.sort(key=lambda c: -c[0])
    kept: list[tuple[float, list[float], list[tuple[float, float]]]] = []
    for c in cands:
        ok = True
        for q in kept:
            ix = max(0.0, min(c[1][2], q[1][2]) - max(c[1][0], q[1][0]) + 1)
            iy = max(0.0, min(c[1][3], q[1][3]) - max(c[1][1], q[1][1]) + 1)
            area = lambda bx: (bx[2] - bx[0] + 1) * (bx[3] - bx[1] + 1)  # noqa: E731
            if ix * iy / (area(c[1]) + area(q[1]) - ix * iy) > nms_iou:
                ok = False
                break
        if ok:
            kept.append(c)
    return blob, kept


# --------------------------------------------------------------------------- tests


def hand_tables(input_size: tuple[int, int] = (64, 64)) -> list[np.ndarray]:
    """One photo's answer: a face at stride 16, a duplicate next to it, a face at stride 8, a weak one."""
    t = empty_tables(input_size)
    # stride 16 (4x4 cells): row 19 = cell (x=1, y=2), anchor 1, centre (16, 32)
    place(t, 0, input_size, 16, 19, np.array([0.0, 8.0, 48.0, 40.0]), np.array([[8, 24], [24, 24], [16, 32], [10, 36], [22, 36]]), 0.9)
    # its duplicate at anchor 0 of the same cell, shifted by 2 px, lower score: NMS removes it
    place(t, 0, input_size, 16, 18, np.array([2.0, 8.0, 50.0, 40.0]), np.array([[9, 24], [25, 24], [17, 32], [11, 36], [23, 36]]), 0.8)
    # stride 8 (8x8 cells): row 2 * (1 * 8 + 6) = 28, centre (48, 8): a small face far from the first
    place(t, 0, input_size, 8, 28, np.array([44.0, 4.0, 56.0, 14.0]), np.array([[46, 7], [53, 7], [49, 9], [47, 12], [52, 12]]), 0.7)
    # stride 32 (2x2 cells): row 7 = cell (1, 1), anchor 1: scores 0.3, below the default threshold
    place(t, 0, input_size, 32, 7, np.array([40.0, 40.0, 60.0, 60.0]), np.full((5, 2), 50.0), 0.3)
    return t


@pytest.fixture(scope="module")
def hand_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return keyed_detector(tmp_path_factory.mktemp("det") / "hand.onnx", hand_tables(), (64, 64))


def test_anchor_centres_are_row_major_and_repeated_per_anchor() -> None:
    c = anchor_centres(2, 3, 16, 2)
    assert c.shape == (12, 2)
    np.testing.assert_array_equal(c[:6], [[0, 0], [0, 0], [16, 0], [16, 0], [32, 0], [32, 0]])
    np.testing.assert_array_equal(c[6:8], [[0, 16], [0, 16]])


def test_letterbox_keeps_the_aspect_ratio_at_the_top_left() -> None:
    img = np.full((64, 128, 3), 200, np.uint8)
    canvas, scale = letterbox(img, (64, 64))
    assert scale == 0.5 and canvas.shape == (64, 64, 3)
    assert (canvas[:32] == 200).all() and (canvas[32:] == 0).all()
    tall = np.full((300, 100, 3), 9, np.uint8)
    canvas, scale = letterbox(tall, (64, 64))
    assert scale == pytest.approx(64 / 300) and (canvas[:, :21] == 9).all() and (canvas[:, 21:] == 0).all()


def test_hand_computed_boxes_and_keypoints(hand_model: Path) -> None:
    # A 128x64 photo letterboxes into the 64x64 input at det_scale 0.5: photo = input / 0.5.
    det = SCRFD(hand_model).detect(np.full((64, 128, 3), 5, np.uint8))
    assert len(det) == 2  # the duplicate went to NMS, the 0.3 candidate to the threshold
    np.testing.assert_allclose(det.scores, [0.9, 0.7], atol=1e-6)
    np.testing.assert_allclose(det.boxes, [[0, 16, 96, 80], [88, 8, 112, 28]], atol=1e-3)
    np.testing.assert_allclose(det.landmarks[0], [[16, 48], [48, 48], [32, 64], [20, 72], [44, 72]], atol=1e-3)
    np.testing.assert_allclose(det.landmarks[1], [[92, 14], [106, 14], [98, 18], [94, 24], [104, 24]], atol=1e-3)
    low = SCRFD(hand_model).detect(np.full((64, 128, 3), 5, np.uint8), score_threshold=0.25)
    assert len(low) == 3 and low.scores[-1] == pytest.approx(0.3)


def test_nms_drops_overlaps_above_the_threshold_only() -> None:
    boxes = np.array([[0, 0, 9, 9], [1, 0, 10, 9], [5, 0, 14, 9], [30, 30, 40, 40]], np.float64)
    scores = np.array([0.9, 0.8, 0.95, 0.1])
    # IoU(+1 areas): box2 vs box0 = 50/150 = 0.333 (kept at 0.4); box1 vs box2 = 60/140 = 0.43 (dropped)
    assert nms(boxes, scores, 0.4).tolist() == [2, 0, 3]
    assert nms(boxes, scores, 0.3).tolist() == [2, 3]


@pytest.mark.parametrize("batch_axis", [False, True])
def test_agrees_with_a_float64_transcription_of_insightface(tmp_path: Path, batch_axis: bool) -> None:
    rng = np.random.default_rng(0)
    size = (96, 64)  # (width, height): a non-square network input
    t = empty_tables(size)
    for k in range(3):
        t[k][0, :, 0] = rng.uniform(0, 0.62, t[k].shape[1])  # a few dozen candidates above 0.5
        t[k + 3][0] = rng.uniform(0.2, 3.0, t[k + 3].shape[1:])
        t[k + 6][0] = rng.uniform(-2.0, 2.0, t[k + 6].shape[1:])
    model = keyed_detector(tmp_path / "random.onnx", t, size, batch_axis)
    det = SCRFD(model)
    for shape in [(480, 640), (333, 517), (700, 300), (64, 96)]:
        img = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
        blob, ref = reference_detect(det.session, img, size, 0.5)
        np.testing.assert_allclose(det.blob(img)[0], blob, atol=1e-6)
        got = det.detect(img)
        assert len(got) == len(ref) > 3, shape
        np.testing.assert_allclose(got.scores, [r[0] for r in ref], atol=1e-6)
        np.testing.assert_allclose(got.boxes, [r[1] for r in ref], atol=1e-3)
        np.testing.assert_allclose(got.landmarks, [r[2] for r in ref], atol=1e-3)


def test_picking_largest_and_central_and_the_thresholds() -> None:
    boxes = np.array([[0, 0, 60, 60], [170, 170, 220, 220], [190, 190, 200, 200]], np.float32)
    dets = Detections(boxes, np.array([0.9, 0.8, 0.6], np.float32), np.zeros((3, 5, 2), np.float32))
    shape = (400, 400, 3)
    assert pick_face(dets, shape, "largest") == 0  # 3600 px^2 against 2500
    # central: 3600 - 2 * (170^2 * 2) < 2500 - 2 * (5^2 * 2)
    assert pick_face(dets, shape, "central") == 1
    split = screen(dets, score=0.7, min_face=20)
    assert len(split.faces) == 2 and len(split.low_score) == 1 and len(split.small) == 0
    split = screen(dets, score=0.5, min_face=55)
    assert split.faces.scores.tolist() == pytest.approx([0.9]) and len(split.small) == 2
    with pytest.raises(ValueError, match="--pick"):
        pick_face(dets, shape, "nearest")
    with pytest.raises(ValueError, match="--score"):
        screen(dets, score=1.5)


def test_fifteen_output_layout_decodes_with_one_anchor() -> None:
    size = (128, 128)
    strides = (8, 16, 32, 64, 128)
    rows = layout_rows(size, strides, 1)
    outs = [np.zeros((r, c), np.float32) for c in (1, 4, 10) for r in rows]
    # stride 64 (2x2 cells, one anchor): row 3 = cell (1, 1), centre (64, 64)
    outs[3][3, 0] = 0.8
    outs[3 + 5][3] = [0.5, 0.25, 0.25, 0.5]
    outs[3 + 10][3] = np.tile([0.1, -0.1], 5)
    det = decode(outs, size, det_scale=2.0)
    np.testing.assert_allclose(det.boxes, [[16, 24, 40, 48]], atol=1e-4)
    np.testing.assert_allclose(det.landmarks[0], np.tile([[35.2, 28.8]], (5, 1)), atol=1e-4)


def test_bad_graphs_and_missing_parts_are_named(tmp_path: Path, hand_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    outs = [np.zeros((10, 1), np.float32)] * 6
    with pytest.raises(ValueError, match="without keypoint outputs"):
        decode(outs, (64, 64), 1.0)
    wrong = [np.zeros((7, c), np.float32) for c in (1, 4, 10) for _ in range(3)]
    with pytest.raises(ValueError, match="output 0 .*expected 128 x 1"):
        decode(wrong, (64, 64), 1.0)
    with pytest.raises(FileNotFoundError, match="detector model not found"):
        SCRFD(tmp_path / "det_10g.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a graph")
    with pytest.raises(ValueError, match="junk.onnx: onnxruntime cannot load it"):
        SCRFD(tmp_path / "junk.onnx")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ImportError, match="pip install 'fr-lightning\\[export\\]'"):
        SCRFD(hand_model)
