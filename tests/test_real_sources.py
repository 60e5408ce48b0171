"""Real-data sources: RecordIO / folder / .bin sources, side files, augmentation, bad input."""

from __future__ import annotations

import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from fr_lightning.batch import FaceBatch, collate_faces
from fr_lightning.data import (
    Augment,
    BinPairs,
    DataFormatError,
    FaceDataModule,
    FolderSource,
    RecordIOReader,
    RecordIOSource,
    normalize_images,
    write_bin,
    write_recordio,
)
from fr_lightning.data.resume import SampleSeeds, SeededFetch
from fr_lightning.data.transforms import hflip_landmarks

SIZE = 24


def _images(n: int, size: int = SIZE, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)


def _rec(root: Path, labels: list[int], num_classes: int | None = None, size: int = SIZE) -> np.ndarray:
    """PNG RecordIO with the given (sorted) labels; returns the images in key order."""
    imgs = _images(len(labels), size)
    write_recordio(root, zip(imgs, labels), num_classes=num_classes, img_fmt=".png")
    return imgs


def _landmarks(n: int, size: int = SIZE) -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.uniform(2, size - 2, size=(n, 5, 2)).astype(np.float32)


def _folder(root: Path, per_class: dict[str, int], size: int = SIZE) -> dict[str, np.ndarray]:
    out = {}
    seed = 0
    for name, n in per_class.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for k in range(n):
            img = _images(1, size, seed)[0]
            seed += 1
            cv2.imwrite(str(root / name / f"{k:03d}.png"), img[:, :, ::-1])
            out[f"{name}/{k:03d}.png"] = img
    return out


# --------------------------------------------------------------------------- RecordIO


def test_recordio_source_samples_side_files_and_collate(tmp_path: Path) -> None:
    labels = [0, 0, 1, 2, 2, 2]
    imgs = _rec(tmp_path, labels)
    lm = _landmarks(len(labels))
    groups = np.array([3, 3, 1, 0, 0, 0])
    np.save(tmp_path / "landmarks.npy", lm)
    np.save(tmp_path / "group.npy", groups)
    src = RecordIOSource(str(tmp_path), landmarks="landmarks.npy", group="group.npy")
    assert src.num_classes == 3
    ds = src.dataset(SIZE, hflip=False)
    assert len(ds) == len(labels)
    samples = ds.__getitems__(list(range(len(labels))))
    for i, s in enumerate(samples):
        assert s["labels"] == labels[i] and s["group"] == groups[i] and s["index"] == i
        np.testing.assert_array_equal(s["landmarks"], lm[i])
        torch.testing.assert_close(s["images"], normalize_images(imgs[i])[0])
    batch = collate_faces(samples)
    assert isinstance(batch, FaceBatch)
    assert batch.images.shape == (6, 3, SIZE, SIZE) and batch.landmarks.shape == (6, 5, 2)
    assert batch.group.tolist() == groups.tolist()


def test_text_side_files_keyed_by_record_key(tmp_path: Path) -> None:
    _rec(tmp_path, [0, 1, 1])
    lm = _landmarks(3)
    # Image keys are 1..3 in the insightface layout; lines in any order, extra keys ignored.
    lines = [f"{k + 1} " + " ".join(f"{v:.4f}" for v in lm[k].ravel()) for k in (2, 0, 1)] + ["99 " + "0 " * 10]
    (tmp_path / "lm.txt").write_text("# key x1 y1 ... x5 y5\n" + "\n".join(lines) + "\n")
    (tmp_path / "group.txt").write_text("1 0\n2 1\n3 2\n")
    ds = RecordIOSource(str(tmp_path), landmarks="lm.txt", group=str(tmp_path / "group.txt")).dataset(SIZE, False)
    out = ds.__getitems__([0, 1, 2])
    np.testing.assert_allclose(np.stack([s["landmarks"] for s in out]), lm, atol=1e-4)
    assert [s["group"] for s in out] == [0, 1, 2]


def test_side_file_mismatch_names_the_file(tmp_path: Path) -> None:
    _rec(tmp_path, [0, 1, 1])
    np.save(tmp_path / "short.npy", _landmarks(2))
    with pytest.raises(DataFormatError, match=r"short\.npy.*shape \(2, 5, 2\).*\(3, 5, 2\)"):
        RecordIOSource(str(tmp_path), landmarks="short.npy").dataset(SIZE, False)
    (tmp_path / "g.txt").write_text("1 0\n3 1\n")
    with pytest.raises(DataFormatError, match=r"g\.txt: no group for image '2'"):
        RecordIOSource(str(tmp_path), group="g.txt").dataset(SIZE, False)
    (tmp_path / "bad.txt").write_text("1 0 0\n")
    with pytest.raises(DataFormatError, match=r"bad\.txt, line 1"):
        RecordIOSource(str(tmp_path), landmarks="bad.txt").dataset(SIZE, False)
    with pytest.raises(FileNotFoundError, match="nope.npy"):
        RecordIOSource(str(tmp_path), group="nope.npy").dataset(SIZE, False)


def test_resize_and_flip_keep_landmarks_consistent(tmp_path: Path) -> None:
    imgs = _rec(tmp_path, [0, 0, 1, 1], size=32)
    lm = _landmarks(4, 32)
    np.save(tmp_path / "lm.npy", lm)
    ds = RecordIOSource(str(tmp_path), landmarks="lm.npy").dataset(16, hflip=True)
    # The flip is a function of (seed, epoch, index): four epochs of the four samples.
    seeds = SampleSeeds(3)
    out = []
    for epoch in range(4):
        seeds.set_epoch(epoch)
        out += SeededFetch(ds, seeds).__getitems__([0, 1, 2, 3])
    flips = 0
    for k, s in enumerate(out):
        assert s["images"].shape == (3, 16, 16)
        small = cv2.resize(imgs[k % 4], (16, 16), interpolation=cv2.INTER_AREA)
        scaled = lm[k % 4] * 0.5
        if torch.equal(s["images"], normalize_images(small[:, ::-1])[0]):
            flips += 1
            np.testing.assert_allclose(s["landmarks"], hflip_landmarks(scaled, 16), atol=1e-5)
        else:
            torch.testing.assert_close(s["images"], normalize_images(small)[0])
            np.testing.assert_allclose(s["landmarks"], scaled, atol=1e-5)
    assert 0 < flips < 16


def test_corrupt_record_raises_or_is_skipped_with_aligned_side_data(tmp_path: Path) -> None:
    _rec(tmp_path, [0, 1, 2])
    np.save(tmp_path / "g.npy", np.array([5, 6, 7]))
    reader = RecordIOReader(tmp_path / "train.rec", tmp_path / "train.idx")
    off = reader.offset_of(2)
    reader.close()
    data = bytearray((tmp_path / "train.rec").read_bytes())
    data[off + 8 + 24 : off + 8 + 40] = b"\0" * 16  # smash the PNG signature of key 2
    (tmp_path / "train.rec").write_bytes(bytes(data))
    ds = RecordIOSource(str(tmp_path), group="g.npy").dataset(SIZE, False)
    with pytest.raises(DataFormatError, match="key 2"):
        ds[1]
    ds = RecordIOSource(str(tmp_path), skip_corrupt=True, group="g.npy").dataset(SIZE, False)
    s = ds[1]
    assert (s["index"], s["labels"], s["group"]) == (2, 2, 7) and ds.skipped == 1


def test_label_out_of_range_names_the_record(tmp_path: Path) -> None:
    _rec(tmp_path, [0, 1, 2])
    (tmp_path / "property").write_text(f"2,{SIZE},{SIZE}\n")
    ds = RecordIOSource(str(tmp_path), skip_corrupt=True).dataset(SIZE, False)
    ds[0]
    with pytest.raises(DataFormatError, match=r"key 3 has label 2\.0, outside \[0, 2\)"):
        ds[2]  # never skipped, even with skip_corrupt


def test_missing_recordio_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nothere"):
        RecordIOSource(str(tmp_path / "nothere")).num_classes


# --------------------------------------------------------------------------- folders


def test_folder_source_labels_and_samples(tmp_path: Path) -> None:
    imgs = _folder(tmp_path / "faces", {"alice": 2, "bob": 1, "carol": 3})
    (tmp_path / "faces" / "lfw.bin").write_bytes(b"ignored: a file in the root")
    src = FolderSource(str(tmp_path / "faces"))
    assert src.num_classes == 3
    assert src.index.classes == ("alice", "bob", "carol")
    ds = src.dataset(SIZE, hflip=False)
    out = ds.__getitems__(list(range(len(ds))))
    keys = src.index.keys
    assert [s["labels"] for s in out] == [0, 0, 1, 2, 2, 2]
    for s, key in zip(out, keys):
        torch.testing.assert_close(s["images"], normalize_images(imgs[key])[0])


def test_folder_list_file_and_text_side_files(tmp_path: Path) -> None:
    imgs = _folder(tmp_path, {"a": 2, "b": 2})
    (tmp_path / "train.txt").write_text("b/000.png 0\na/001.png 4\n\n# comment\na/000.png 4\n")
    (tmp_path / "groups.txt").write_text("a/000.png 1\na/001.png 2\nb/000.png 3\n")
    src = FolderSource(str(tmp_path), list_file="train.txt", group="groups.txt")
    assert src.num_classes == 5
    out = src.dataset(SIZE, False).__getitems__([0, 1, 2])
    assert [(s["labels"], s["group"]) for s in out] == [(0, 3), (4, 2), (4, 1)]
    torch.testing.assert_close(out[0]["images"], normalize_images(imgs["b/000.png"])[0])
    with pytest.raises(DataFormatError, match=r"'a/001.png' has label 4, outside \[0, 3\)"):
        FolderSource(str(tmp_path), list_file="train.txt", num_classes=3).num_classes
    (tmp_path / "bad.txt").write_text("a/000.png x\n")
    with pytest.raises(DataFormatError, match=r"bad\.txt, line 1"):
        FolderSource(str(tmp_path), list_file="bad.txt").num_classes


def test_missing_or_empty_folders_are_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing"):
        FolderSource(str(tmp_path / "missing")).num_classes
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataFormatError, match=r"empty: no identity sub-folders"):
        FolderSource(str(tmp_path / "empty")).num_classes
    _folder(tmp_path / "some", {"a": 1})
    (tmp_path / "some" / "b").mkdir()
    (tmp_path / "some" / "b" / "notes.txt").write_text("no images here")
    with pytest.raises(DataFormatError, match=r"some/b: identity folder holds no images"):
        FolderSource(str(tmp_path / "some")).num_classes
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(DataFormatError, match="empty.txt: the image list is empty"):
        FolderSource(str(tmp_path), list_file="empty.txt").num_classes


def test_unreadable_image_file_names_it(tmp_path: Path) -> None:
    _folder(tmp_path, {"a": 1, "b": 1})
    (tmp_path / "b" / "000.png").write_bytes(b"not an image")
    ds = FolderSource(str(tmp_path)).dataset(SIZE, False)
    with pytest.raises(DataFormatError, match=r"b/000\.png"):
        ds[1]


def test_datamodule_with_folder_source_yields_face_batches(tmp_path: Path) -> None:
    _folder(tmp_path, {"a": 3, "b": 3})
    dm = FaceDataModule(train=FolderSource(str(tmp_path)), val_sets=[], image_size=16, batch_size=4, num_workers=0)
    assert dm.num_classes == 2
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert isinstance(batch, FaceBatch) and batch.images.shape == (4, 3, 16, 16)
    assert batch.landmarks is None and batch.group is None


# --------------------------------------------------------------------------- .bin pairs


def test_bin_pairs_name_from_stem_and_resize(tmp_path: Path) -> None:
    imgs = _images(4, 32)
    write_bin(tmp_path / "cfp_fp.bin", list(imgs), [True, False], img_fmt=".png")
    ps = BinPairs(str(tmp_path / "cfp_fp.bin")).build(32)
    assert ps.name == "cfp_fp" and ps.issame.tolist() == [True, False]
    np.testing.assert_array_equal(ps.load(np.array([3, 1])), imgs[[3, 1]])
    small = BinPairs(str(tmp_path / "cfp_fp.bin"), name="cfp").build(16)
    assert small.name == "cfp"
    np.testing.assert_array_equal(small.load(np.array([0]))[0], cv2.resize(imgs[0], (16, 16), interpolation=cv2.INTER_AREA))
    with pytest.raises(FileNotFoundError, match="lfw.bin"):
        BinPairs(str(tmp_path / "lfw.bin")).build(16)


# --------------------------------------------------------------------------- augmentation


def test_augment_flip_only_and_full_pipeline() -> None:
    img = _images(1, 32)[0]
    lm = _landmarks(1, 32)[0]
    flip = Augment(hflip=True)
    torch.manual_seed(0)
    results = [flip(img, lm) for _ in range(20)]
    assert {r.flipped for r in results} == {True, False}
    for r in results:
        want_img = img[:, ::-1] if r.flipped else img
        want_lm = hflip_landmarks(lm, 32) if r.flipped else lm
        np.testing.assert_array_equal(r.image, want_img)
        np.testing.assert_allclose(r.landmarks, want_lm)
    full = Augment(random_resized_crop=1.0, brightness_contrast=1.0, grayscale=0.5, blur=0.5, downscale=1.0, jpeg=1.0)
    r = full(img, lm)
    assert r.image.shape == img.shape and r.image.dtype == np.uint8 and r.landmarks.shape == (5, 2)
    assert not np.array_equal(r.image, img)
    assert full(img).landmarks is None
    clone = pickle.loads(pickle.dumps(full))  # the lazily built pipeline is not pickled
    assert clone._pipeline is None and clone(img).image.shape == img.shape
    with pytest.raises(ValueError, match="jpeg"):
        Augment(jpeg=2.0)


def test_augment_random_resized_crop_moves_landmarks_with_pixels() -> None:
    img = np.zeros((64, 64, 3), np.uint8)
    img[30:34, 20:24] = 255  # a bright dot at (21.5, 31.5)
    lm = np.tile(np.array([[21.5, 31.5]], np.float32), (5, 1))
    aug = Augment(hflip=False, random_resized_crop=1.0, crop_scale=(0.5, 0.7))
    torch.manual_seed(1)
    for _ in range(5):
        r = aug(img, lm)
        ys, xs = np.nonzero(r.image[..., 0] > 100)
        if len(xs):
            assert abs(xs.mean() - r.landmarks[0, 0]) < 3 and abs(ys.mean() - r.landmarks[0, 1]) < 3
