"""RecordIO reading/writing without mxnet: layouts, multi-part records, bad files, workers."""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from fr_lightning.data import (
    Augment,
    DataFormatError,
    RecordIOReader,
    RecordIOSet,
    RecordIOWriter,
    decode_image,
    normalize_images,
    write_recordio,
)
from fr_lightning.data.formats.recordio import MAGIC, pack_header, pack_image, unpack_header
from fr_lightning.data.sources.recordio import RecordIOFaces

MAGIC_BYTES = struct.pack("<I", MAGIC)


def _images(n: int, size: int = 16, seed: int = 0) -> list[np.ndarray]:
    """Smooth images (JPEG-friendly) with a different colour per image."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    out = []
    for _ in range(n):
        base = rng.integers(40, 200, size=3)
        img = base + 2 * (yy[..., None] + xx[..., None]) + rng.integers(0, 3, size=(size, size, 3))
        out.append(np.clip(img, 0, 255).astype(np.uint8))
    return out


def _item(ds: RecordIOSet, i: int) -> tuple[np.ndarray, int]:
    """Decoded RGB image and checked label of image ``i`` (the training path minus augmentation)."""
    buf, label = ds.read(i)
    return decode_image(buf, ds.describe(i)), ds.check_label(label, i)


def _faces(root: Path, skip_corrupt: bool = False) -> RecordIOFaces:
    return RecordIOFaces(RecordIOSet(root), 16, Augment(hflip=False), skip_corrupt=skip_corrupt)


def _samples(labels: list[int], size: int = 16) -> list[tuple[np.ndarray, int]]:
    return list(zip(_images(len(labels), size), labels))


def _raw_parts(rec: Path, offset: int) -> list[tuple[int, int]]:
    """(cflag, length) of each part of the record at ``offset``, parsed independently."""
    data = rec.read_bytes()
    parts = []
    pos = offset
    while True:
        magic, lrec = struct.unpack_from("<II", data, pos)
        assert magic == MAGIC
        cflag, length = lrec >> 29, lrec & ((1 << 29) - 1)
        parts.append((cflag, length))
        pos += 8 + ((length + 3) & ~3)
        if cflag in (0, 3):
            return parts


# --------------------------------------------------------------------------- round trips


def test_write_read_png_exact(tmp_path: Path) -> None:
    samples = _samples([0, 0, 1, 1, 1, 3])
    n = write_recordio(tmp_path, samples, num_classes=5, img_fmt=".png")
    assert n == 6
    assert (tmp_path / "property").read_text().strip() == "5,16,16"
    ds = RecordIOSet(tmp_path)
    assert ds.layout == "insightface"
    assert len(ds) == 6 and ds.num_classes == 5 and ds.image_size == (16, 16)
    assert list(ds.keys) == [1, 2, 3, 4, 5, 6]
    np.testing.assert_array_equal(ds.labels, [0, 0, 1, 1, 1, 3])
    for i, (img, label) in enumerate(samples):
        got, got_label = _item(ds, i)
        assert got.dtype == np.uint8 and got.shape == (16, 16, 3)
        np.testing.assert_array_equal(got, img)
        assert got_label == label and isinstance(got_label, int)
    # Identity records: [start, end) per class, empty range for class 2 and 4.
    reader = ds.reader
    ranges = [tuple(unpack_header(reader.read(k)).label.astype(int)) for k in ds.identity_keys]
    assert ranges == [(1, 3), (3, 6), (6, 6), (6, 7), (7, 7)]
    head = unpack_header(reader.read(0))
    assert head.flag == 2 and list(head.label) == [7.0, 12.0] and head.rest == b""


def test_jpeg_within_tolerance_and_num_classes_fallbacks(tmp_path: Path) -> None:
    samples = _samples([0, 1, 2, 2])
    write_recordio(tmp_path, samples, img_fmt=".jpg", quality=95)
    ds = RecordIOSet(tmp_path)
    for i, (img, _) in enumerate(samples):
        diff = np.abs(_item(ds, i)[0].astype(int) - img.astype(int)).mean()
        assert diff < 3.0
    assert ds.num_classes == 3
    (tmp_path / "property").unlink()  # falls back to the identity records
    assert RecordIOSet(tmp_path).num_classes == 3


def test_plain_im2rec_file(tmp_path: Path) -> None:
    """No header record: every .idx key is an image; labels may be vectors."""
    imgs = _images(3)
    keys = [10, 4, 7]
    labels = [2, 0, 5]
    with RecordIOWriter(tmp_path / "train.rec", tmp_path / "train.idx") as w:
        w.write(keys[0], pack_image(imgs[0], labels[0], img_fmt=".png"))
        w.write(keys[1], pack_image(imgs[1], [labels[1], 9.0], img_fmt=".png"))  # label vector
        w.write(keys[2], pack_image(imgs[2], labels[2], img_fmt=".png"))
    ds = RecordIOSet(tmp_path)
    assert ds.layout == "im2rec" and list(ds.keys) == keys
    assert ds.num_classes == 6  # max label + 1, no property file
    np.testing.assert_array_equal(ds.labels, labels)
    for i in range(3):
        img, label = _item(ds, i)
        np.testing.assert_array_equal(img, imgs[i])
        assert label == labels[i]


def test_unsorted_samples_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="sorted by label"):
        write_recordio(tmp_path, _samples([1, 0]))


def test_header_pack_unpack() -> None:
    payload = pack_header(3.0, id=7, id2=9) + b"img"
    assert len(payload) == 27
    assert unpack_header(payload) == (0, 3.0, 7, 9, b"img")
    flag, label, id_, id2, rest = unpack_header(pack_header([1.0, 2.5, 4.0]) + b"x")
    assert flag == 3 and id_ == 0 and id2 == 0 and rest == b"x"
    np.testing.assert_array_equal(label, np.array([1.0, 2.5, 4.0], dtype=np.float32))
    with pytest.raises(DataFormatError, match="rec-x: payload of 5 bytes"):
        unpack_header(b"short", "rec-x")


# --------------------------------------------------------------------------- multi-part


def test_magic_word_splits_and_joins(tmp_path: Path) -> None:
    rec, idx = tmp_path / "x.rec", tmp_path / "x.idx"
    # Magic at aligned offsets 8 and 20 (split twice), and at offset 30 (unaligned: kept).
    payload = b"A" * 8 + MAGIC_BYTES + b"B" * 8 + MAGIC_BYTES + b"CCCCCC" + MAGIC_BYTES + b"DDD"
    starts_with = MAGIC_BYTES + b"tail"  # magic at offset 0: empty first part
    plain = b"hello"
    with RecordIOWriter(rec, idx) as w:
        off_plain = w.write(0, plain)
        off_multi = w.write(1, payload)
        off_start = w.write(2, starts_with)
        w.write(3, plain)
    assert off_plain == 0 and off_multi == 16  # 8-byte head + 5 bytes + 3 padding
    assert _raw_parts(rec, off_multi) == [(1, 8), (2, 8), (3, len(payload) - 24)]
    assert _raw_parts(rec, off_start) == [(1, 0), (3, 4)]
    assert rec.stat().st_size % 4 == 0
    assert idx.read_text().splitlines()[1] == f"1\t{off_multi}"

    reader = RecordIOReader(rec, idx)
    assert list(reader.keys) == [0, 1, 2, 3]
    assert reader.read(1) == payload
    assert reader.read(2) == starts_with
    assert reader.read_at(off_multi) == payload
    assert reader.read(3) == plain
    assert reader.read_prefix(1, 12) == payload[:12]
    # Sequential iteration without an index, and ordinal keys from a header scan.
    no_idx = RecordIOReader(rec)
    assert list(no_idx) == [plain, payload, starts_with, plain]
    assert list(no_idx.keys) == [0, 1, 2, 3] and no_idx.read(1) == payload


# --------------------------------------------------------------------------- bad input


def test_truncated_rec_names_file_and_key(tmp_path: Path) -> None:
    write_recordio(tmp_path, _samples([0, 0, 1]), img_fmt=".png")
    reader = RecordIOReader(tmp_path / "train.rec", tmp_path / "train.idx")
    off3 = reader.offset_of(3)
    data = (tmp_path / "train.rec").read_bytes()
    (tmp_path / "train.rec").write_bytes(data[: off3 + 40])  # cut inside image key 3
    # The index is checked against the file size as soon as it is read.
    with pytest.raises(DataFormatError, match=r"train\.idx: offset \d+ for key 4 is past the end of .*train\.rec"):
        RecordIOSet(tmp_path)
    # Without the index, reading the cut record names the file, the offset and the truncation.
    reader = RecordIOReader(tmp_path / "train.rec")
    with pytest.raises(DataFormatError) as err:
        list(reader)
    msg = str(err.value)
    assert "train.rec" in msg and f"offset {off3}" in msg and "truncated" in msg


def test_idx_offset_pointing_at_garbage(tmp_path: Path) -> None:
    write_recordio(tmp_path, _samples([0, 1]), img_fmt=".png")
    idx = tmp_path / "train.idx"
    lines = idx.read_text().splitlines()
    key, off = lines[2].split("\t")
    lines[2] = f"{key}\t{int(off) + 4}"
    idx.write_text("\n".join(lines) + "\n")
    ds = RecordIOSet(tmp_path)
    with pytest.raises(DataFormatError) as err:
        ds.read(1)
    assert f"offset {int(off) + 4} for key 2 in" in str(err.value)
    assert "train.idx does not point at a record in" in str(err.value)
    assert str(err.value).split(" (found")[0].endswith("train.rec")


def test_bad_idx_line(tmp_path: Path) -> None:
    write_recordio(tmp_path, _samples([0]), img_fmt=".png")
    with open(tmp_path / "train.idx", "a") as f:
        f.write("7\tnot-a-number\n")
    with pytest.raises(DataFormatError, match=r"train\.idx, line 4: expected 'key<TAB>offset'"):
        RecordIOSet(tmp_path)


def test_corrupt_jpeg_raises_or_skips(tmp_path: Path) -> None:
    imgs = _images(3)
    with RecordIOWriter(tmp_path / "train.rec", tmp_path / "train.idx") as w:
        w.write(0, pack_image(imgs[0], 0))
        w.write(1, pack_header(1.0) + b"\xff\xd8\xff\xe0 definitely not a jpeg")
        w.write(2, pack_image(imgs[2], 2))
    with pytest.raises(DataFormatError, match=r"train\.rec: record for key 1: cannot decode image"):
        _faces(tmp_path)[1]
    skipping = _faces(tmp_path, skip_corrupt=True)
    sample = skipping[1]
    assert sample["labels"] == 2 and sample["index"] == 2 and sample["images"].shape == (3, 16, 16)
    assert skipping.skipped == 1


def test_label_out_of_range(tmp_path: Path) -> None:
    write_recordio(tmp_path, _samples([0, 1, 3]), img_fmt=".png")
    (tmp_path / "property").write_text("3,16,16\n")  # claims 3 classes, data has label 3
    ds = RecordIOSet(tmp_path)
    faces = _faces(tmp_path, skip_corrupt=True)  # label errors are never skipped
    assert faces[0]["labels"] == 0
    with pytest.raises(DataFormatError) as err:
        faces[2]
    msg = str(err.value)
    assert "train.rec" in msg and "key 3" in msg and "label 3.0" in msg and "[0, 3)" in msg
    with pytest.raises(DataFormatError, match="key 3 has label 3.0"):
        ds.labels
    # Negative label in a plain im2rec file.
    other = tmp_path / "neg"
    other.mkdir()
    with RecordIOWriter(other / "train.rec", other / "train.idx") as w:
        w.write(5, pack_image(_images(1)[0], -1.0, img_fmt=".png"))
    (other / "property").write_text("4,16,16\n")
    with pytest.raises(DataFormatError, match="key 5 has label -1.0"):
        _item(RecordIOSet(other), 0)


# --------------------------------------------------------------------------- workers


def test_pickle_and_dataloader_workers(tmp_path: Path) -> None:
    samples = _samples([0, 0, 1, 1, 2, 2])
    write_recordio(tmp_path, samples, img_fmt=".png")
    ds = RecordIOSet(tmp_path)
    assert _item(ds, 0)[1] == 0  # opens the file in this process
    clone = pickle.loads(pickle.dumps(ds))
    assert clone.reader._fd is None
    np.testing.assert_array_equal(_item(clone, 3)[0], samples[3][0])
    # A reader whose descriptor belongs to another process reopens its own.
    ds.reader._pid = -1
    np.testing.assert_array_equal(_item(ds, 1)[0], samples[1][0])
    assert ds.reader._pid != -1

    faces = RecordIOFaces(ds, 16, Augment(hflip=False))
    loader = DataLoader(faces, batch_size=2, num_workers=2, shuffle=False)
    batches = list(loader)
    got = torch.cat([b["images"] for b in batches])
    assert torch.equal(got, normalize_images(np.stack([s[0] for s in samples])))
    assert torch.cat([b["labels"] for b in batches]).tolist() == [0, 0, 1, 1, 2, 2]


def test_header_key_range_beyond_float32_precision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Above 2**24 images float32 rounds the header's A; the exact boundary is recovered."""
    import fr_lightning.data.formats.recordio_set as recordio

    write_recordio(tmp_path, _samples([0, 0, 1, 1, 2, 2]), img_fmt=".png")  # A = 7, B = 10
    with open(tmp_path / "train.rec", "r+b") as f:
        f.seek(8)
        f.write(pack_header([8.0, 10.0]))  # what rounding to a float32 neighbour looks like
    monkeypatch.setattr(recordio, "MAX_EXACT_LABEL", 4)
    ds = RecordIOSet(tmp_path)
    assert list(ds.keys) == [1, 2, 3, 4, 5, 6] and ds.identity_keys == range(7, 10)
