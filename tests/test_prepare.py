"""``fr data align RAW OUT --detector MODEL`` on a rendered photo folder, then ``fr data convert`` and ``verify``.

Twenty "photos" of mixed sizes: synthetic faces (``fr_lightning.data.synthetic``) pasted at known
positions, scales and angles into larger canvases; some with no face, some with two, one with
a face below ``--min-face``, one whose only face scores below ``--score``, one undecodable file,
and a text file beside them. The detector is a keyed ONNX graph (``tests/test_detect.py``) whose
outputs encode each photo's known faces (plus a near-duplicate of each for NMS to remove) at
the anchors of the letterboxed input. So this proves the plumbing around a detector (letterbox
scale, decoding back to photo pixels, thresholds, NMS, picking, alignment, the identity
folders, the report, the chain into RecordIO), not the accuracy of a trained one.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from fr_lightning.cli import main  # noqa: E402
from fr_lightning.data import align_face  # noqa: E402
from fr_lightning.data.synthetic import FaceRenderer  # noqa: E402
from fr_lightning.detect import letterbox  # noqa: E402
from tests.test_detect import CODE_STEP, anchor_centres, empty_tables, keyed_detector, place  # noqa: E402

INPUT = (160, 160)
# (file, (width, height), faces: (identity render, side px, angle deg, centre x, centre y, score))
FaceSpec = tuple[int, float, float, float, float, float]
SCENES: list[tuple[str, tuple[int, int], list[FaceSpec]]] = [
    ("id0/a.jpg", (640, 480), [(0, 200, 0, 320, 250, 0.95)]),
    ("id0/b.png", (480, 640), [(1, 180, 12, 240, 330, 0.9)]),
    ("id0/c.jpg", (800, 600), [(2, 260, -15, 420, 300, 0.88)]),
    ("id0/d.jpg", (300, 300), [(3, 150, 5, 150, 160, 0.91)]),
    ("id0/e.jpg", (1024, 768), [(4, 300, 0, 500, 380, 0.93), (5, 120, 0, 850, 200, 0.8)]),  # two faces
    ("id1/a.jpg", (500, 375), [(6, 160, -8, 250, 190, 0.9)]),
    ("id1/b.jpg", (720, 540), []),  # no face
    ("id1/c.png", (400, 600), [(7, 170, 20, 200, 300, 0.87)]),
    ("id1/d.jpg", (900, 500), [(8, 220, 0, 450, 260, 0.9)]),
    ("id1/e.jpg", (640, 640), [(9, 30, 0, 320, 320, 0.9)]),  # a face below --min-face 40
    ("id2/a.jpg", (352, 288), [(10, 140, 3, 176, 150, 0.92)]),
    ("id2/b.jpg", (600, 800), [(11, 240, -5, 300, 620, 0.85), (12, 200, 0, 300, 380, 0.75)]),  # two faces
    ("id2/c.jpg", (1280, 720), [(13, 330, 10, 640, 360, 0.9)]),
    ("id2/d.jpg", (560, 420), [(14, 180, 0, 280, 210, 0.35)]),  # scores below --score 0.5
    ("id2/e.jpg", (768, 1024), []),  # no face
    ("id3/a.jpg", (450, 450), [(15, 210, -12, 225, 230, 0.9)]),
    ("id3/b.png", (333, 517), [(16, 160, 0, 166, 260, 0.89)]),
    ("id3/c.jpg", (1000, 700), [(17, 280, 7, 480, 350, 0.9)]),
    ("id3/d.jpg", (512, 384), [(18, 170, 0, 256, 190, 0.9)]),
]
UNDECODABLE = "id3/broken.jpg"


def render_folder(raw: Path, model: Path) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """Write the photos and the keyed detector; returns each photo's faces as (landmarks, aligned reference)."""
    renderer = FaceRenderer(seed=3, image_size=112, nuisance_scale=0.3)
    n_faces = 1 + max(f[0] for _, _, faces in SCENES for f in faces)
    batch = renderer.render(np.arange(n_faces), np.zeros(n_faces, np.int64))
    rng = np.random.default_rng(0)
    tables = empty_tables(INPUT, photos=len(SCENES))
    truth: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for code, (name, (w, h), faces) in enumerate(SCENES):
        base = rng.integers(40, 200, (3,)).astype(np.float32)
        ramp = np.linspace(0, 1, w, dtype=np.float32)[None, :, None] * rng.uniform(-40, 40, 3).astype(np.float32)
        canvas = np.clip(base + ramp + rng.normal(0, 6, (h, w, 3)), 0, 255).astype(np.uint8)
        canvas[:24, :24] = CODE_STEP * code + 5  # which answer the keyed detector gives
        scale = letterbox(np.zeros((h, w, 3), np.uint8), INPUT)[1]
        truth[name] = []
        for face, side, angle, cx, cy, score in faces:
            crop = cv2.cvtColor(batch.images[face], cv2.COLOR_RGB2BGR)
            m = cv2.getRotationMatrix2D((56.0, 56.0), angle, side / 112.0)
            m[:, 2] += (cx - 56.0, cy - 56.0)
            cv2.warpAffine(crop, m, (w, h), dst=canvas, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_TRANSPARENT)
            lm = batch.landmarks[face].astype(np.float64) @ m[:, :2].T + m[:, 2]
            corners = np.array([[12, 12], [100, 12], [12, 108], [100, 108]], np.float64) @ m[:, :2].T + m[:, 2]
            box = np.r_[corners.min(0), corners.max(0)]
            # the face's anchor: stride 16, the cell under its centre, anchor 0; a near-duplicate at anchor 1
            gx, gy = (np.clip(np.round(np.array([cx, cy]) * scale / 16), 0, INPUT[0] // 16 - 1)).astype(int)
            row = (gy * (INPUT[0] // 16) + gx) * 2
            assert np.allclose(anchor_centres(10, 10, 16, 2)[row], (gx * 16, gy * 16))
            place(tables, code, INPUT, 16, row, box * scale, lm * scale, score)
            place(tables, code, INPUT, 16, row + 1, (box + [2, 1, 2, 1]) * scale, (lm + 1) * scale, score - 0.05)
            truth[name].append((lm, align_face(crop, batch.landmarks[face], 112)[0]))
        path = raw / name
        path.parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(path), canvas, [cv2.IMWRITE_JPEG_QUALITY, 95] if name.endswith(".jpg") else [])
    (raw / UNDECODABLE).write_bytes(b"\xff\xd8 this is not a JPEG")
    (raw / "id0" / "notes.txt").write_text("taken in 2019\n")
    keyed_detector(model, tables, INPUT)
    return truth


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, list[tuple[np.ndarray, np.ndarray]]]]:
    root = tmp_path_factory.mktemp("photos")
    truth = render_folder(root / "raw", root / "det.onnx")
    return root / "raw", root / "det.onnx", truth


def test_raw_photos_to_a_verified_recordio_set(photos, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw, model, truth = photos
    out = tmp_path / "aligned"
    main(["data", "align", str(raw), str(out), "--detector", str(model), "--min-face", "40", "--to", "rec", "--no-progress"])
    printed = capsys.readouterr().out
    assert "20 photos read" in printed and "13 with one face, 2 with several" in printed and "1 undecodable" in printed
    assert UNDECODABLE in printed

    report = json.loads((out / "prepare_report.json").read_text())
    assert (report["photos"], report["one_face"], report["several_faces"], report["no_face"], report["undecodable"]) == (20, 13, 2, 4, 1)
    assert report["aligned"] == 15
    assert report["no_face_reasons"] == {"nothing detected": 2, "below --score": 1, "below --min-face": 1}
    files = report["files"]
    assert files["undecodable"] == [UNDECODABLE] and files["not_photos"] == ["id0/notes.txt"]
    assert files["no_face"] == {"id1/b.jpg": "nothing detected", "id2/e.jpg": "nothing detected", "id1/e.jpg": "below --min-face", "id2/d.jpg": "below --score"}
    assert files["several_faces"] == {"id0/e.jpg": 2, "id2/b.jpg": 2}  # the near-duplicates went to NMS
    assert report["identities"] == 4 and report["identities_without_crops"] == []

    # landmarks.txt: the picked (largest) face's true landmarks, in photo pixels
    from fr_lightning.deploy.images import read_landmarks

    lms = read_landmarks(out / "landmarks.txt")
    assert sorted(lms) == sorted(n for n, faces in truth.items() if n not in files["no_face"] and faces)
    for name, got in lms.items():
        np.testing.assert_allclose(got, truth[name][0][0], atol=1e-3, err_msg=name)

    # each crop is its face, aligned: close to the same face aligned from the clean render
    for name in lms:
        crop = cv2.imread(str(out / name)).astype(np.float32)
        assert crop.shape == (112, 112, 3)
        own = np.abs(crop - truth[name][0][1]).mean()
        other = min(np.abs(crop - faces[0][1]).mean() for n, faces in truth.items() if faces and n != name)
        assert own < 12 and own < other / 2, (name, own, other)

    # the chain: OUT-rec holds 15 images of 4 identities, and fr data verify accepts it
    from fr_lightning.data import RecordIOSet
    from fr_lightning.data.verify import verify

    rec = RecordIOSet(tmp_path / "aligned-rec")
    assert len(rec) == 15 and rec.num_classes == 4
    assert verify(tmp_path / "aligned-rec", progress=False).ok

    # detection and alignment run separately give the same crops
    main(["data", "align", str(raw), str(out / "landmarks.txt"), str(tmp_path / "again")])
    for name in lms:
        a = cv2.imread(str(out / name)).astype(np.int16)
        b = cv2.imread(str(tmp_path / "again" / name)).astype(np.int16)
        assert np.abs(a - b).mean() < 1.0, name


def test_central_pick_and_output_folder_rules(photos, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw, model, truth = photos
    out = tmp_path / "out"
    main(["data", "align", str(raw), str(out), "--detector", str(model), "--pick", "central", "--no-progress"])
    report = json.loads((out / "prepare_report.json").read_text())
    # without --min-face the 30 px face counts; in id2/b.jpg (600x800) the smaller face sits at the centre
    assert (report["one_face"], report["several_faces"], report["no_face"]) == (14, 2, 3)
    lms = {}
    for line in (out / "landmarks.txt").read_text().splitlines()[1:]:
        name, *vals = line.split()
        lms[name] = np.array(vals, float).reshape(5, 2)
    np.testing.assert_allclose(lms["id2/b.jpg"], truth["id2/b.jpg"][1][0], atol=1e-3)
    np.testing.assert_allclose(lms["id0/e.jpg"], truth["id0/e.jpg"][0][0], atol=1e-3)

    # an earlier output is replaced; a folder holding something else is refused, and no temporary is left
    main(["data", "align", str(raw), str(out), "--detector", str(model), "--score", "0.3", "--no-progress"])
    assert json.loads((out / "prepare_report.json").read_text())["no_face_reasons"]["below --score"] == 0
    other = tmp_path / "mine"
    other.mkdir()
    (other / "keep.txt").write_text("x")
    with pytest.raises(SystemExit) as exc:
        main(["data", "align", str(raw), str(other), "--detector", str(model), "--no-progress"])
    assert exc.value.code == 2 and "not empty" in capsys.readouterr().err
    assert (other / "keep.txt").read_text() == "x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "out"]


def pooling_embedder(path: Path) -> Path:
    """A 112x112 ONNX 'recognition model' whose embedding is the mean colour of each half of the crop."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("Split", ["x", "halves"], ["top", "bottom"], axis=2),
        helper.make_node("GlobalAveragePool", ["top"], ["pt"]),
        helper.make_node("GlobalAveragePool", ["bottom"], ["pb"]),
        helper.make_node("Concat", ["pt", "pb"], ["both"], axis=1),
        helper.make_node("Flatten", ["both"], ["emb"]),
    ]
    graph = helper.make_graph(
        nodes,
        "pool",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 112, 112])],
        [helper.make_tensor_value_info("emb", TensorProto.FLOAT, ["N", 6])],
        [numpy_helper.from_array(np.array([56, 56], np.int64), "halves")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_fr_embed_detects_and_aligns_unaligned_photos(photos, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw, model, _ = photos
    embedder = pooling_embedder(tmp_path / "emb.onnx")
    main(["embed", str(embedder), str(raw), str(tmp_path / "det.npy"), "--detector", str(model), "--min-face", "40", "--no-progress"])
    err = capsys.readouterr().err
    assert "5 photos gave no face" in err
    names = (tmp_path / "det.files.txt").read_text().split()
    skipped = dict(line.split("\t") for line in (tmp_path / "det.skipped.txt").read_text().splitlines())
    assert skipped == {
        "id1/b.jpg": "nothing detected",
        "id1/e.jpg": "below --min-face",
        "id2/d.jpg": "below --score",
        "id2/e.jpg": "nothing detected",
        UNDECODABLE: "undecodable",
    }
    assert len(names) == 15 and not set(names) & set(skipped)
    # the same photos aligned from the landmarks file `fr data align --detector` writes embed the same
    out = tmp_path / "aligned"
    main(["data", "align", str(raw), str(out), "--detector", str(model), "--min-face", "40", "--no-progress"])
    listed = tmp_path / "list.txt"
    listed.write_text("".join(f"{raw / n}\n" for n in names))
    lm = tmp_path / "lm.txt"
    lm.write_text("".join(f"{raw / line}\n" for line in (out / "landmarks.txt").read_text().splitlines()[1:]))
    main(["embed", str(embedder), str(listed), str(tmp_path / "lm.npy"), "--landmarks", str(lm), "--no-progress"])
    np.testing.assert_allclose(np.load(tmp_path / "det.npy"), np.load(tmp_path / "lm.npy"), atol=1e-5)


# --------------------------------------------------------------------------- no silent stretching


def write_faces(folder: Path, sizes: list[tuple[int, int]]) -> list[Path]:
    """Rendered faces resized to ``(width, height)`` each, one identity folder ``p0``."""
    batch = FaceRenderer(seed=1, image_size=112).render(np.zeros(len(sizes), np.int64), np.arange(len(sizes)))
    paths = []
    for k, (w, h) in enumerate(sizes):
        path = folder / "p0" / f"{k}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), cv2.resize(cv2.cvtColor(batch.images[k], cv2.COLOR_RGB2BGR), (w, h)))
        paths.append(path)
    return paths


def test_size_check_warns_once_naming_a_file_or_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    from fr_lightning.data.transforms import ImageSizeWarning, SizeCheck, resize_face

    check = SizeCheck(112, "set A")
    img = np.zeros((80, 100, 3), np.uint8)
    with pytest.warns(ImageSizeWarning) as caught:
        for k in range(3):
            out, _ = resize_face(img, None, 112, check, f"a/{k}.jpg")
            assert out.shape == (112, 112, 3)
    assert len(caught) == 1 and "set A" in str(caught[0].message) and "a/0.jpg is 100x80, not square" in str(caught[0].message)
    assert check.count == 3
    resize_face(np.zeros((112, 112, 3), np.uint8), None, 112, SizeCheck(112, policy="refuse"), "fine.jpg")  # right size: no error
    with pytest.raises(ValueError, match="b.jpg: image is 100x80, not square"):
        resize_face(img, None, 112, SizeCheck(112, policy="refuse"), "b.jpg")
    monkeypatch.setenv("FR_IMAGE_SIZE", "refuse")
    with pytest.raises(ValueError, match="c.jpg: image is 128x128, resized"):
        resize_face(np.zeros((128, 128, 3), np.uint8), None, 112, SizeCheck(112), "c.jpg")
    monkeypatch.setenv("FR_IMAGE_SIZE", "sometimes")
    with pytest.raises(ValueError, match="FR_IMAGE_SIZE"):
        SizeCheck(112)


def test_training_samples_of_another_size_warn_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import fr_lightning.data.transforms as transforms
    from fr_lightning.data import Augment, scan_folder
    from fr_lightning.data.sources import FolderFaces

    monkeypatch.setattr(transforms, "_PROCESS_CHECKS", {})
    write_faces(tmp_path, [(120, 90), (90, 120), (112, 112)])
    faces = FolderFaces(scan_folder(tmp_path), 112, Augment(hflip=False))
    with pytest.warns(transforms.ImageSizeWarning) as caught:
        batch = faces.__getitems__([0, 1, 2, 0])
    assert len(caught) == 1 and "120x90, not square" in str(caught[0].message)
    assert str(Path("p0") / "0.png") in str(caught[0].message)  # names the file
    assert all(s["images"].shape == (3, 112, 112) for s in batch)


def test_fr_embed_warns_once_or_refuses_with_the_file_named(photos, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from fr_lightning.data.transforms import ImageSizeWarning

    embedder = pooling_embedder(tmp_path / "emb.onnx")
    write_faces(tmp_path / "faces", [(150, 100), (112, 112), (150, 100), (100, 150)])
    with pytest.warns(ImageSizeWarning) as caught:
        main(["embed", str(embedder), str(tmp_path / "faces"), str(tmp_path / "e.npy"), "--no-progress"])
    # images load on two threads, so which odd one is named may vary; one warning always
    assert len(caught) == 1 and re.search(r"p0/[023]\.png is (150x100|100x150), not square", str(caught[0].message))
    assert np.load(tmp_path / "e.npy").shape == (4, 6)
    monkeypatch.setenv("FR_IMAGE_SIZE", "refuse")
    with pytest.raises(SystemExit) as exc:
        main(["embed", str(embedder), str(tmp_path / "faces"), str(tmp_path / "f.npy"), "--no-progress"])
    assert exc.value.code == 1 and re.search(r"p0/[023]\.png: image is", capsys.readouterr().err)
    assert not (tmp_path / "f.npy").exists()


def test_size_check_warns_once_across_threads_and_pickles() -> None:
    import pickle
    from concurrent.futures import ThreadPoolExecutor

    from fr_lightning.data.transforms import ImageSizeWarning, SizeCheck

    check = SizeCheck(112, "set B")
    with pytest.warns(ImageSizeWarning) as caught:
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(lambda k: check((90, 120, 3), f"{k}.jpg"), range(200)))
    assert len(caught) == 1 and check.count == 200
    copy = pickle.loads(pickle.dumps(check))  # as a DataLoader worker receives it
    assert copy.count == 200 and copy.warned
