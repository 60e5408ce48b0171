"""The insightface RecordIO layout: a ``train.rec/.idx/property`` folder as keys, labels and image bytes.

Two layouts are understood:

* insightface: key 0 is a header (flag 2, label vector ``[A, B]``, no image); images are keys
  ``1..A-1``; keys ``A..B-1`` hold one ``[start, end)`` record per identity;
* plain im2rec: every key in ``train.idx`` is an image record.

:class:`RecordIOSet` is the one read path for such a folder: the training dataset
(:class:`~fr_lightning.data.sources.recordio.RecordIOFaces`), the converters and ``fr data``
all go through :meth:`RecordIOSet.read`. Writing is in
:mod:`fr_lightning.data.formats.recordio_write`.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from fr_lightning.data.errors import DataFormatError, check_label
from fr_lightning.data.formats.recordio import _HEADER, HEADER_SIZE, unpack_header
from fr_lightning.data.formats.recordio_reader import RecordIOReader

__all__ = ["RecordIOSet", "parse_property", "MAX_EXACT_LABEL"]

#: Largest integer label that float32 stores exactly.
MAX_EXACT_LABEL = 2**24


class RecordIOSet:
    """A RecordIO training folder: ``root/train.rec``, ``train.idx`` and optionally ``property``.

    Pickles cheaply into DataLoader workers (each process opens its own file descriptor).

    Args:
        root: Folder holding ``train.rec``, ``train.idx`` and optionally ``property``.

    Attributes:
        keys: int64 image keys in dataset order (position ``j`` of the set is key ``keys[j]``).
        offsets: int64 byte offset in ``train.rec`` of each image record (``keys`` order).
        layout: ``insightface`` or ``im2rec``.
        identity_keys: The identity records' key range (insightface layout), else None.
        image_size: ``(height, width)`` from ``property``, else None.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.rec_path = self.root / "train.rec"
        self.idx_path = self.root / "train.idx"
        self.property_path = self.root / "property"
        self.reader = RecordIOReader(self.rec_path, self.idx_path)
        self.image_size: tuple[int, int] | None = None
        self._property_classes: int | None = None
        if self.property_path.is_file():
            self._property_classes, self.image_size = parse_property(self.property_path)
        self.layout = "im2rec"
        self.identity_keys: range | None = None
        self._num_classes: int | None = None
        self._raw_labels: np.ndarray | None = None
        self._labels: np.ndarray | None = None
        self.keys: np.ndarray = self._detect_layout()
        self.offsets: np.ndarray = self.reader.offsets_of(self.keys)

    def __len__(self) -> int:
        return len(self.keys)

    def describe(self, position: int) -> str:
        """``<rec file>: record for key <k>`` of the image at ``position`` (for error messages)."""
        return f"{self.rec_path}: record for key {int(self.keys[position])}"

    def read(self, position: int) -> tuple[bytes, float]:
        """Encoded image bytes and raw label of the image at ``position`` (label vectors: first value).

        Raises:
            DataFormatError: The record is missing, truncated or has a bad header (names file and key).
        """
        payload = self.reader.read_at(int(self.offsets[position]), int(self.keys[position]))
        head = unpack_header(payload, self.describe(position))
        label = head.label if head.flag == 0 else float(head.label[0])  # type: ignore[index]
        return head.rest, float(label)

    def check_label(self, label: float, position: int) -> int:
        """Return ``label`` as int, or raise a DataFormatError naming the record and ``property``."""
        return check_label(label, self.num_classes, self.describe(position), f"; check {self.property_path} or the data")

    def _detect_layout(self) -> np.ndarray:
        """Return the image keys (int64), recognising the insightface header record at key 0."""
        reader = self.reader
        if 0 not in reader:
            return reader.keys.copy()
        where = f"{self.rec_path}: key 0"
        # A header is exactly 24 + 8 bytes (label vector [A, B], no image); an im2rec
        # image at key 0 always carries image bytes, so 33 bytes tell them apart.
        prefix = reader.read_prefix(0, HEADER_SIZE + 9)
        flag = _HEADER.unpack_from(prefix)[0] if len(prefix) >= HEADER_SIZE else 0
        if flag < 2 or len(prefix) != HEADER_SIZE + 4 * flag:
            return reader.keys.copy()
        head = unpack_header(prefix, where)
        a, b = float(head.label[0]), float(head.label[1])  # type: ignore[index]
        if not (a.is_integer() and b.is_integer() and 1 <= a <= b):
            raise DataFormatError(f"{where}: header record has an invalid key range [{a}, {b})")
        first_id, end = int(a), int(b)
        if first_id > MAX_EXACT_LABEL:
            first_id, end = self._refine_key_range(first_id)
        keys = np.arange(1, first_id, dtype=np.int64)
        missing = reader.missing_keys(keys)
        if len(missing):
            raise DataFormatError(
                f"{self.idx_path}: image key {int(missing[0])} (of 1..{first_id - 1}, as "
                f"announced by the header record) is missing ({len(missing)} missing)"
            )
        self.layout = "insightface"
        self.identity_keys = range(first_id, end)
        return keys

    def _refine_key_range(self, approx_first_id: int) -> tuple[int, int]:
        """Recover the exact [A, B) when A > 2**24 (float32 rounded it to a nearby value).

        A is the first key whose record is an identity record (exactly 32 bytes, flag 2)
        right after an image record; B follows from the number of keys from A on.
        """
        reader = self.reader

        def is_identity(key: int) -> bool:
            if key not in reader:
                return False
            p = reader.read_prefix(key, HEADER_SIZE + 9)
            return len(p) == HEADER_SIZE + 8 and _HEADER.unpack_from(p)[0] == 2

        for k in range(approx_first_id - 8, approx_first_id + 9):
            if k > 1 and is_identity(k) and not is_identity(k - 1):
                all_keys = reader.keys
                return k, k + int(np.count_nonzero(all_keys >= k))
        raise DataFormatError(
            f"{self.rec_path}: cannot locate the identity records near key {approx_first_id}"
        )

    @property
    def num_classes(self) -> int:
        """Number of identities: ``property`` line 1, else identity records, else max label + 1."""
        if self._num_classes is None:
            if self._property_classes is not None:
                self._num_classes = self._property_classes
            elif self.identity_keys is not None:
                self._num_classes = len(self.identity_keys)
            else:
                raw = self._read_raw_labels()
                finite = raw[np.isfinite(raw)]
                self._num_classes = int(finite.max()) + 1 if len(finite) else 0
        return self._num_classes

    @property
    def labels(self) -> np.ndarray:
        """All labels (int64, in ``keys`` order), read from record headers only and cached.

        Only the first 28 bytes of each payload are read (about 36 bytes of I/O per
        record, in file order), never the image bytes.
        """
        if self._labels is None:
            raw = self._read_raw_labels()
            n = self.num_classes
            with np.errstate(invalid="ignore"):
                bad = ~np.isfinite(raw) | (raw != np.floor(raw)) | (raw < 0) | (raw >= n)
            if bad.any():
                i = int(np.argmax(bad))
                self.check_label(float(raw[i]), i)
            self._labels = raw.astype(np.int64)
        return self._labels

    def _read_raw_labels(self) -> np.ndarray:
        if self._raw_labels is None:
            offsets = self.offsets
            raw = np.empty(len(self.keys), dtype=np.float64)
            read = self.reader.read_at
            # Visit records in file order so the disk reads sequentially.
            for i in np.argsort(offsets, kind="stable").tolist():
                key = int(self.keys[i])
                prefix = read(int(offsets[i]), key, HEADER_SIZE + 4)
                raw[i] = _first_label(prefix, f"{self.rec_path}: key {key}")
            self._raw_labels = raw
        return self._raw_labels


def _first_label(payload_prefix: bytes, where: str) -> float:
    if len(payload_prefix) < HEADER_SIZE:
        raise DataFormatError(f"{where}: payload shorter than the {HEADER_SIZE}-byte header")
    flag, label, _, _ = _HEADER.unpack_from(payload_prefix)
    if flag == 0:
        return float(label)
    if len(payload_prefix) < HEADER_SIZE + 4:
        raise DataFormatError(f"{where}: header announces a label vector but the record ends")
    return float(struct.unpack_from("<f", payload_prefix, HEADER_SIZE)[0])


def parse_property(path: Path) -> tuple[int, tuple[int, int] | None]:
    """Parse ``num_classes,height,width`` from line 1 of a ``property`` file."""
    text = path.read_text(encoding="utf-8", errors="replace").strip()
    first = text.splitlines()[0] if text else ""
    fields = [f.strip() for f in first.split(",")]
    try:
        num_classes = int(fields[0])
        size = (int(fields[1]), int(fields[2])) if len(fields) >= 3 else None
    except (ValueError, IndexError):
        raise DataFormatError(
            f"{path}, line 1: expected 'num_classes,height,width', got {first[:80]!r}"
        ) from None
    if num_classes < 0:
        raise DataFormatError(f"{path}, line 1: negative num_classes {num_classes}")
    if size is not None and min(size) <= 0:
        raise DataFormatError(f"{path}, line 1: image size {size[0]}x{size[1]} must be positive")
    return num_classes, size
