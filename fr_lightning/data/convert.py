"""Identity-preserving conversions between the on-disk formats (folder -> RecordIO -> WebDataset shards).

Images are moved as the encoded bytes they came with (JPEG/PNG), never decoded and re-encoded,
so pixels survive every conversion exactly; labels are carried unchanged.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from fr_lightning.data.errors import DataFormatError
from fr_lightning.data.formats.images import encode_image
from fr_lightning.data.formats.recordio_set import RecordIOSet
from fr_lightning.data.formats.recordio_write import write_recordio_encoded
from fr_lightning.data.formats.wds import image_ext
from fr_lightning.data.formats.wds_write import WdsWriter
from fr_lightning.data.sources.folder import scan_folder
from fr_lightning.data.sources.side_files import load_side_file

__all__ = [
    "encoded_size",
    "iter_recordio",
    "folder_to_recordio",
    "recordio_to_wds",
    "folder_to_wds",
]

_CV2_NATIVE = (".jpg", ".jpeg", ".png")


def encoded_size(buf: bytes, where: str) -> tuple[int, int]:
    """``(height, width)`` of an encoded image, read from its header (Pillow) or by decoding (OpenCV)."""
    try:
        from PIL import Image

        with Image.open(io.BytesIO(buf)) as im:
            return int(im.size[1]), int(im.size[0])
    except ImportError:
        pass
    except Exception:  # noqa: BLE001 - let OpenCV have a go and report
        pass
    img = cv2.imdecode(np.frombuffer(buf, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise DataFormatError(f"{where}: cannot decode image ({len(buf)} bytes)")
    return int(img.shape[0]), int(img.shape[1])


def _portable_bytes(path: Path) -> bytes:
    """File bytes, re-encoded as PNG (lossless) only when the format is not JPEG/PNG."""
    buf = path.read_bytes()
    if path.suffix.lower() in _CV2_NATIVE:
        return buf
    img = cv2.imdecode(np.frombuffer(buf, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise DataFormatError(f"{path}: cannot decode image")
    return encode_image(img[:, :, ::-1], img_fmt=".png")


def iter_recordio(records: RecordIOSet, order: np.ndarray | None = None) -> Iterator[tuple[int, bytes, int]]:
    """Yield ``(position, encoded image bytes, label)`` of a RecordIO set (positions in ``order``).

    Raises:
        DataFormatError: A record is unreadable or its label is outside ``[0, num_classes)``.
    """
    positions = np.arange(len(records)) if order is None else order
    for j in positions.tolist():
        buf, label = records.read(j)
        yield j, buf, records.check_label(label, j)


def folder_to_recordio(src: str | Path, out: str | Path, list_file: str | Path | None = None) -> int:
    """Convert a face folder (or ``path label`` list) to RecordIO; every image must have the same size.

    Returns:
        The number of images written.
    """
    index = scan_folder(src, list_file)
    order = np.argsort(index.labels, kind="stable")  # RecordIO wants identities contiguous
    size: list[tuple[int, int]] = []

    def samples() -> Iterator[tuple[bytes, int]]:
        for j in order.tolist():
            path = index.paths[j]
            buf = _portable_bytes(path)
            hw = encoded_size(buf, str(path))
            if not size:
                size.append(hw)
            elif hw != size[0]:
                raise DataFormatError(
                    f"{path}: image is {hw[0]}x{hw[1]}, the first image is {size[0][0]}x{size[0][1]}; RecordIO "
                    "sets hold one size (align or resize the folder first, e.g. `fr data align`)"
                )
            yield buf, int(index.labels[j])

    gen = samples()
    first = next(gen)  # fixes the image size before the property file is written
    return write_recordio_encoded(out, _chain(first, gen), index.num_classes, size[0])


def _chain(first: tuple[bytes, int], rest: Iterator[tuple[bytes, int]]) -> Iterator[tuple[bytes, int]]:
    yield first
    yield from rest


def _side(path: str | Path | None, keys: object, kind: str, what: str) -> np.ndarray | None:
    return None if path is None else load_side_file(path, keys, kind, what)  # type: ignore[arg-type]


def recordio_to_wds(
    src: str | Path,
    out: str | Path,
    max_count: int = 10_000,
    shuffle: bool = True,
    seed: int = 0,
    landmarks: str | Path | None = None,
    group: str | Path | None = None,
) -> dict:
    """Convert a RecordIO folder to WebDataset tar shards (side files go into each sample's ``.json``).

    Args:
        src: RecordIO folder.
        out: Shard folder to write.
        max_count: Samples per shard.
        shuffle: Mix identities across shards (seeded); off keeps RecordIO order.
        seed: Shuffle seed.
        landmarks: Optional landmarks side file of the RecordIO set.
        group: Optional group side file.

    Returns:
        The written ``shards.json`` content.
    """
    records = RecordIOSet(src)
    lm = _side(landmarks, records.keys, "landmarks", str(records.rec_path))
    grp = _side(group, records.keys, "group", str(records.rec_path))
    order = np.random.default_rng(seed).permutation(len(records)) if shuffle else None
    with WdsWriter(out, records.num_classes, records.image_size, max_count) as writer:
        for j, buf, label in iter_recordio(records, order):
            writer.add(buf, label, None if lm is None else lm[j], None if grp is None else int(grp[j]))
    return writer.close()  # already closed by the with block: returns the index


def folder_to_wds(
    src: str | Path,
    out: str | Path,
    list_file: str | Path | None = None,
    max_count: int = 10_000,
    shuffle: bool = True,
    seed: int = 0,
    landmarks: str | Path | None = None,
    group: str | Path | None = None,
) -> dict:
    """Convert a face folder (or ``path label`` list) to WebDataset tar shards.

    Returns:
        The written ``shards.json`` content.
    """
    index = scan_folder(src, list_file)
    lm = _side(landmarks, index.keys, "landmarks", str(src))
    grp = _side(group, index.keys, "group", str(src))
    order = np.random.default_rng(seed).permutation(len(index.paths)) if shuffle else np.arange(len(index.paths))
    with WdsWriter(out, index.num_classes, None, max_count) as writer:
        for j in order.tolist():
            buf = _portable_bytes(index.paths[j])
            try:
                image_ext(buf)
            except ValueError as exc:
                raise DataFormatError(f"{index.paths[j]}: {exc}") from None
            if writer.image_size is None:
                writer.image_size = encoded_size(buf, str(index.paths[j]))
            writer.add(buf, int(index.labels[j]), None if lm is None else lm[j], None if grp is None else int(grp[j]))
    return writer.close()  # already closed by the with block: returns the index
