"""Identity-preserving conversions between the on-disk formats (folder -> RecordIO -> shards).

Images are moved as the encoded bytes they came with (JPEG/PNG), never decoded and re-encoded,
so pixels survive every conversion exactly; labels are carried unchanged.
"""

from __future__ import annotations

import io
import operator
from collections.abc import Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np

from fr_lightning.data.errors import DataFormatError
from fr_lightning.data.real_sources import load_side_file, scan_folder
from fr_lightning.data.recordio import RecordIODataset, RecordIOWriter, encode_image, pack_header, unpack_header
from fr_lightning.data.streaming import ShardWriter

__all__ = [
    "encoded_size",
    "write_recordio_encoded",
    "iter_recordio",
    "folder_to_recordio",
    "recordio_to_shards",
    "folder_to_shards",
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


def write_recordio_encoded(
    root: str | Path,
    samples: Iterable[tuple[bytes, int]],
    num_classes: int,
    image_size: tuple[int, int],
) -> int:
    """Write already-encoded images as ``train.rec/.idx/property`` in the insightface layout.

    Same layout as :func:`fr_lightning.data.recordio.write_recordio` (header record at key 0,
    images at keys 1..A-1, one identity record per class), for bytes that must not be re-encoded.

    Args:
        root: Output folder (created).
        samples: ``(encoded_image, label)`` pairs, labels non-decreasing.
        num_classes: Number of classes (identity records are written for all of them).
        image_size: ``(height, width)`` written to ``property``.

    Returns:
        The number of images written.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    starts: list[int] = []
    key, last = 1, -1
    with RecordIOWriter(root / "train.rec", root / "train.idx") as writer:
        header_offset = writer.write(0, pack_header([0.0, 0.0]))
        for i, (buf, label) in enumerate(samples):
            label = operator.index(label)
            if label < last:
                raise ValueError(f"sample {i}: label {label} after {last}; samples must be sorted by label")
            if not 0 <= label < num_classes:
                raise ValueError(f"sample {i}: label {label} outside [0, {num_classes})")
            while len(starts) <= label:
                starts.append(key)
            writer.write(key, pack_header(float(label), id=key) + bytes(buf))
            last, key = label, key + 1
        while len(starts) <= num_classes:
            starts.append(key)
        first_identity = key
        for c in range(num_classes):
            writer.write(first_identity + c, pack_header([starts[c], starts[c + 1]], id=first_identity + c))
    # The header's [A, B) is known only now; same length, so patch it in place.
    with open(root / "train.rec", "r+b") as f:
        f.seek(header_offset + 8)
        f.write(pack_header([float(first_identity), float(first_identity + num_classes)]))
    (root / "property").write_text(f"{num_classes},{image_size[0]},{image_size[1]}\n", encoding="ascii")
    return key - 1


def iter_recordio(records: RecordIODataset, order: np.ndarray | None = None) -> Iterator[tuple[int, bytes, int]]:
    """Yield ``(position, encoded image bytes, label)`` of a RecordIO dataset (positions in ``order``).

    Raises:
        DataFormatError: A record is unreadable or its label is outside ``[0, num_classes)``.
    """
    n = records.num_classes
    positions = np.arange(len(records)) if order is None else order
    for j in positions.tolist():
        key = int(records.keys[j])
        where = f"{records.rec_path}: record for key {key}"
        head = unpack_header(records.reader.read(key), where)
        label = head.label if head.flag == 0 else float(head.label[0])  # type: ignore[index]
        if not (float(label).is_integer() and 0 <= label < n):
            raise DataFormatError(f"{where} has label {label}, outside [0, {n}) (num_classes={n})")
        yield j, head.rest, int(label)


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


def recordio_to_shards(
    src: str | Path,
    out: str | Path,
    chunk_bytes: int = 64 << 20,
    shuffle: bool = True,
    seed: int = 0,
    landmarks: str | Path | None = None,
    group: str | Path | None = None,
) -> dict:
    """Convert a RecordIO folder to streaming shards (side files are carried into the chunks).

    Args:
        src: RecordIO folder.
        out: Shard folder to write.
        chunk_bytes: Target chunk size.
        shuffle: Mix identities across chunks (seeded); off keeps RecordIO order.
        seed: Shuffle seed.
        landmarks: Optional landmarks side file of the RecordIO set.
        group: Optional group side file.

    Returns:
        The written ``index.json`` content.
    """
    records = RecordIODataset(src)
    lm = _side(landmarks, records.keys, "landmarks", str(records.rec_path))
    grp = _side(group, records.keys, "group", str(records.rec_path))
    order = np.random.default_rng(seed).permutation(len(records)) if shuffle else None
    with ShardWriter(out, records.num_classes, records.image_size, chunk_bytes) as writer:
        for j, buf, label in iter_recordio(records, order):
            writer.add(buf, label, None if lm is None else lm[j], None if grp is None else int(grp[j]))
    return writer.close()  # already closed by the with block: returns the index


def folder_to_shards(
    src: str | Path,
    out: str | Path,
    list_file: str | Path | None = None,
    chunk_bytes: int = 64 << 20,
    shuffle: bool = True,
    seed: int = 0,
    landmarks: str | Path | None = None,
    group: str | Path | None = None,
) -> dict:
    """Convert a face folder (or ``path label`` list) to streaming shards.

    Returns:
        The written ``index.json`` content.
    """
    index = scan_folder(src, list_file)
    lm = _side(landmarks, index.keys, "landmarks", str(src))
    grp = _side(group, index.keys, "group", str(src))
    order = np.random.default_rng(seed).permutation(len(index.paths)) if shuffle else np.arange(len(index.paths))
    size = None
    with ShardWriter(out, index.num_classes, None, chunk_bytes) as writer:
        for j in order.tolist():
            buf = _portable_bytes(index.paths[j])
            if size is None:
                size = encoded_size(buf, str(index.paths[j]))
                writer.image_size = size
            writer.add(buf, int(index.labels[j]), None if lm is None else lm[j], None if grp is None else int(grp[j]))
    return writer.close()  # already closed by the with block: returns the index

