"""MXNet RecordIO bytes: record framing, payload headers and the writer (no ``mxnet`` needed).

Byte layout (``docs/data.md`` has the full description):

* a record is ``uint32 magic, uint32 lrec, payload, zero padding to 4 bytes`` with
  ``cflag = lrec >> 29`` and ``length = lrec & (2**29 - 1)``;
* a payload holding the magic word at a 4-byte aligned offset is stored as several
  parts (cflag 1 first, 2 middle, 3 last) with those four bytes dropped;
* ``.idx`` lines are ``key<TAB>offset``;
* a payload starts with a ``'<IfQQ'`` header (flag, label, id, id2), followed by ``flag``
  float32 label values when ``flag > 0``, then the encoded image.

Reading lives in :mod:`fr_lightning.data.formats.recordio_reader`; the insightface layout on
top (header record, identity records, ``property``) in :mod:`fr_lightning.data.formats.recordio_set`.
"""

from __future__ import annotations

import operator
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from fr_lightning.data.errors import DataFormatError
from fr_lightning.data.formats.images import encode_image

__all__ = [
    "MAGIC",
    "HEADER_SIZE",
    "RecordIOWriter",
    "UnpackedRecord",
    "pack_header",
    "unpack_header",
    "pack_image",
]

MAGIC = 0xCED7230A
_MAGIC_BYTES = struct.pack("<I", MAGIC)
_REC_HEAD = struct.Struct("<II")  # magic, lrec
_LEN_MASK = (1 << 29) - 1
_HEADER = struct.Struct("<IfQQ")  # flag, label, id, id2
HEADER_SIZE = _HEADER.size  # 24


def _pad4(n: int) -> int:
    return (n + 3) & ~3


def _split_payload(payload: bytes) -> list[bytes]:
    """Split a payload at every 4-byte aligned magic word (the word itself is dropped)."""
    parts: list[bytes] = []
    start = 0
    pos = payload.find(_MAGIC_BYTES)
    while pos != -1:
        if pos % 4 == 0:
            parts.append(payload[start:pos])
            start = pos + 4
            pos = payload.find(_MAGIC_BYTES, start)
        else:
            pos = payload.find(_MAGIC_BYTES, pos + 1)
    parts.append(payload[start:])
    return parts


class RecordIOWriter:
    """Write a ``.rec`` file (and optionally its ``.idx``), byte-compatible with MXNet.

    Use as a context manager; ``write`` returns the record's offset.

    Args:
        rec_path: The ``.rec`` file to create (overwritten).
        idx_path: The ``.idx`` file to create, or None to write no index.
    """

    def __init__(self, rec_path: str | Path, idx_path: str | Path | None = None) -> None:
        self.rec_path = Path(rec_path)
        self.idx_path = None if idx_path is None else Path(idx_path)
        self._rec = open(self.rec_path, "wb")  # noqa: SIM115 - closed in close()
        self._idx = None if self.idx_path is None else open(self.idx_path, "w", encoding="ascii")
        self._pos = 0
        self._seen: set[int] = set()
        self.num_split = 0

    def tell(self) -> int:
        """Offset at which the next record will start."""
        return self._pos

    def write(self, key: int, payload: bytes) -> int:
        """Append one record under ``key``; return its offset.

        Raises:
            ValueError: Duplicate key, or a payload of 2**29 bytes or more.
        """
        key = operator.index(key)
        if key in self._seen:
            raise ValueError(f"{self.rec_path}: key {key} written twice")
        payload = bytes(payload)
        if len(payload) > _LEN_MASK:
            raise ValueError(f"{self.rec_path}: record {key} is {len(payload)} bytes; max {_LEN_MASK}")
        offset = self._pos
        parts = _split_payload(payload)
        self.num_split += len(parts) > 1
        chunks: list[bytes] = []
        for i, part in enumerate(parts):
            if len(parts) == 1:
                cflag = 0
            elif i == 0:
                cflag = 1
            elif i == len(parts) - 1:
                cflag = 3
            else:
                cflag = 2
            chunks.append(_REC_HEAD.pack(MAGIC, (cflag << 29) | len(part)))
            chunks.append(part)
        # Middle parts have lengths that are multiples of 4, so padding the whole payload
        # equals padding the last part (this is what dmlc-core does).
        chunks.append(b"\0" * (_pad4(len(payload)) - len(payload)))
        data = b"".join(chunks)
        failed = self.rec_path
        try:
            self._rec.write(data)
            if self._idx is not None:
                failed = self.idx_path
                self._idx.write(f"{key}\t{offset}\n")
        except OSError as exc:  # e.g. ENOSPC: name the file being written
            if exc.filename is not None or exc.errno is None:
                raise
            raise type(exc)(exc.errno, exc.strerror or str(exc), str(failed)) from exc
        self._pos += len(data)
        self._seen.add(key)
        return offset

    def close(self) -> None:
        """Flush and close the files."""
        self._rec.close()
        if self._idx is not None:
            self._idx.close()

    def __enter__(self) -> RecordIOWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------- payloads


class UnpackedRecord(NamedTuple):
    """A payload split into its header fields and the remaining bytes."""

    flag: int
    label: float | np.ndarray
    id: int
    id2: int
    rest: bytes


def pack_header(label: float | Sequence[float], id: int = 0, id2: int = 0) -> bytes:
    """Build a payload header: ``'<IfQQ'`` plus a float32 label vector when ``label`` is one.

    Args:
        label: A scalar label (flag 0) or a non-empty sequence (flag = its length).
        id: The header's ``id`` field.
        id2: The header's ``id2`` field.
    """
    if isinstance(label, (int, float, np.integer, np.floating)):
        return _HEADER.pack(0, float(label), id, id2)
    vec = np.asarray(label, dtype="<f4").ravel()
    if vec.size == 0:
        raise ValueError("label vector must not be empty")
    return _HEADER.pack(vec.size, 0.0, id, id2) + vec.tobytes()


def unpack_header(payload: bytes, where: str = "record") -> UnpackedRecord:
    """Split a payload into ``(flag, label, id, id2, rest)``.

    ``label`` is a float when ``flag == 0``, else a float32 array of ``flag`` values.

    Raises:
        DataFormatError: The payload is too short for its header (``where`` names it).
    """
    if len(payload) < HEADER_SIZE:
        raise DataFormatError(
            f"{where}: payload of {len(payload)} bytes is shorter than the {HEADER_SIZE}-byte header"
        )
    flag, label, id_, id2 = _HEADER.unpack_from(payload)
    if flag == 0:
        return UnpackedRecord(0, float(label), id_, id2, bytes(payload[HEADER_SIZE:]))
    end = HEADER_SIZE + 4 * flag
    if len(payload) < end:
        raise DataFormatError(
            f"{where}: header announces {flag} label values but the payload has "
            f"only {len(payload)} bytes"
        )
    vec = np.frombuffer(payload, dtype="<f4", count=flag, offset=HEADER_SIZE).astype(np.float32)
    return UnpackedRecord(flag, vec, id_, id2, bytes(payload[end:]))


def pack_image(
    img_rgb: np.ndarray,
    label: float | Sequence[float],
    id: int = 0,
    quality: int = 95,
    img_fmt: str = ".jpg",
) -> bytes:
    """Encode an RGB uint8 image with OpenCV and prepend its header.

    Args:
        img_rgb: ``[H, W, 3]`` RGB (or ``[H, W]`` grey) uint8 array.
        label: Scalar label or label vector (see :func:`pack_header`).
        id: The header's ``id`` field.
        quality: JPEG quality (ignored for PNG, which is lossless).
        img_fmt: ``'.jpg'`` or ``'.png'``.
    """
    return pack_header(label, id=id) + encode_image(img_rgb, quality=quality, img_fmt=img_fmt)
