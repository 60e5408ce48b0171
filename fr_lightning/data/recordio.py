"""Read and write MXNet RecordIO face datasets (``train.rec``/``train.idx``/``property``).

No ``mxnet`` needed. The byte layout is described in ``FORMATS.md``; in short:

* a record is ``uint32 magic, uint32 lrec, payload, zero padding to 4 bytes`` with
  ``cflag = lrec >> 29`` and ``length = lrec & (2**29 - 1)``;
* a payload holding the magic word at a 4-byte aligned offset is stored as several
  parts (cflag 1 first, 2 middle, 3 last) with those four bytes dropped;
* ``.idx`` lines are ``key<TAB>offset``;
* a payload starts with a ``'<IfQQ'`` header (flag, label, id, id2), followed by ``flag``
  float32 label values when ``flag > 0``, then the encoded image.

Files are read with ``os.pread`` on a descriptor opened lazily per process, so a reader
(and :class:`RecordIODataset`) can be pickled into DataLoader workers or used after a fork.
"""

from __future__ import annotations

import logging
import operator
import os
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np
from torch.utils.data import Dataset

from fr_lightning.data.errors import DataFormatError

__all__ = [
    "MAGIC",
    "RecordIOReader",
    "RecordIOWriter",
    "UnpackedRecord",
    "pack_header",
    "unpack_header",
    "pack_image",
    "decode_image",
    "RecordIODataset",
    "write_recordio",
]

log = logging.getLogger(__name__)

MAGIC = 0xCED7230A
_MAGIC_BYTES = struct.pack("<I", MAGIC)
_REC_HEAD = struct.Struct("<II")  # magic, lrec
_LEN_MASK = (1 << 29) - 1
_HEADER = struct.Struct("<IfQQ")  # flag, label, id, id2
HEADER_SIZE = _HEADER.size  # 24
# Largest integer label that float32 stores exactly.
_MAX_EXACT_LABEL = 2**24


def _pad4(n: int) -> int:
    return (n + 3) & ~3


# --------------------------------------------------------------------------- low level


class RecordIOReader:
    """Random-access and sequential reader for a ``.rec`` file.

    Args:
        rec_path: The ``.rec`` file.
        idx_path: Its ``.idx`` file. Without one, keys are the record ordinals
            0, 1, ... found by scanning the record headers (payloads are skipped).

    Attributes:
        keys: int64 array of the keys in ``.idx`` line order (a key listed twice maps
            to its last offset, as in MXNet).
    """

    def __init__(self, rec_path: str | Path, idx_path: str | Path | None = None) -> None:
        self.rec_path = Path(rec_path)
        self.idx_path = None if idx_path is None else Path(idx_path)
        if not self.rec_path.is_file():
            raise FileNotFoundError(f"RecordIO file not found: {self.rec_path}")
        if self.idx_path is not None and not self.idx_path.is_file():
            raise FileNotFoundError(f"RecordIO index not found: {self.idx_path}")
        self._fd: int | None = None
        self._pid: int | None = None
        self._size = 0
        self._keys: np.ndarray | None = None
        self._offsets: np.ndarray | None = None
        self._sorted_keys: np.ndarray | None = None
        self._sorted_offsets: np.ndarray | None = None

    # -- file handle -----------------------------------------------------------------

    def _handle(self) -> int:
        """Return a descriptor owned by the current process, opening one if needed."""
        pid = os.getpid()
        if self._fd is None or self._pid != pid:
            # After a fork the inherited descriptor is shared with the parent: drop this
            # process's copy (the parent's stays open) and open our own.
            if self._fd is not None:
                try:
                    os.close(self._fd)
                except OSError:
                    pass
            fd = os.open(self.rec_path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
            self._fd, self._pid = fd, pid
            self._size = os.fstat(fd).st_size
        return self._fd

    def close(self) -> None:
        """Close the file descriptor owned by this process (it reopens on next use)."""
        if self._fd is not None and self._pid == os.getpid():
            try:
                os.close(self._fd)
            except OSError:
                pass
        self._fd = None
        self._pid = None

    def __enter__(self) -> RecordIOReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_fd"] = None
        state["_pid"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    # -- index -----------------------------------------------------------------------

    def _load_index(self) -> None:
        if self._keys is not None:
            return
        if self.idx_path is None:
            offsets = np.fromiter(self.scan_offsets(), dtype=np.int64)
            keys = np.arange(len(offsets), dtype=np.int64)
        else:
            keys, offsets = _parse_idx(self.idx_path)
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        # For a repeated key keep its last line (stable sort puts it last), like MXNet's dict.
        last = np.ones(len(sorted_keys), dtype=bool)
        last[:-1] = sorted_keys[1:] != sorted_keys[:-1]
        self._sorted_keys = sorted_keys[last]
        self._sorted_offsets = offsets[order][last]
        self._keys, self._offsets = keys, offsets

    @property
    def keys(self) -> np.ndarray:
        """Record keys in ``.idx`` line order (int64 array)."""
        self._load_index()
        assert self._keys is not None
        return self._keys

    def __len__(self) -> int:
        return len(self.keys)

    def __contains__(self, key: object) -> bool:
        try:
            self.offset_of(operator.index(key))  # type: ignore[arg-type]
        except (KeyError, TypeError):
            return False
        return True

    def offset_of(self, key: int) -> int:
        """Byte offset of the record stored under ``key``.

        Raises:
            KeyError: The key is not in the index.
        """
        self._load_index()
        assert self._sorted_keys is not None and self._sorted_offsets is not None
        pos = int(np.searchsorted(self._sorted_keys, key))
        if pos < len(self._sorted_keys) and self._sorted_keys[pos] == key:
            return int(self._sorted_offsets[pos])
        raise KeyError(f"key {key} is not in {self.idx_path or self.rec_path}")

    def offsets_of(self, keys: np.ndarray) -> np.ndarray:
        """Vectorised :meth:`offset_of` (int64 array); raises KeyError for the first missing key."""
        missing = self.missing_keys(keys)
        if len(missing):
            raise KeyError(f"key {int(missing[0])} is not in {self.idx_path or self.rec_path}")
        assert self._sorted_keys is not None and self._sorted_offsets is not None
        pos = np.searchsorted(self._sorted_keys, np.asarray(keys, dtype=np.int64))
        return self._sorted_offsets[pos]

    def missing_keys(self, keys: np.ndarray) -> np.ndarray:
        """Return the subset of ``keys`` that the index does not hold."""
        self._load_index()
        assert self._sorted_keys is not None
        keys = np.asarray(keys, dtype=np.int64)
        if len(self._sorted_keys) == 0:
            return keys
        pos = np.minimum(np.searchsorted(self._sorted_keys, keys), len(self._sorted_keys) - 1)
        return keys[self._sorted_keys[pos] != keys]

    # -- reading ---------------------------------------------------------------------

    def _where(self, offset: int, key: int | None) -> str:
        if key is None:
            return f"{self.rec_path}: record at offset {offset}"
        return f"{self.rec_path}: record for key {key} at offset {offset}"

    def _part_header(self, pos: int, offset: int, key: int | None, first: bool) -> tuple[int, int]:
        """Read and validate the 8-byte part header at ``pos``; return (cflag, length)."""
        fd = self._handle()
        head = os.pread(fd, 8, pos)
        if len(head) < 8:
            if first:
                if key is not None and self.idx_path is not None:
                    raise DataFormatError(
                        f"offset {offset} for key {key} in {self.idx_path} is past the end "
                        f"of {self.rec_path} ({self._size} bytes); is the .rec file truncated?"
                    )
                raise DataFormatError(
                    f"offset {offset} is past the end of {self.rec_path} ({self._size} bytes)"
                )
            raise DataFormatError(
                f"{self._where(offset, key)} is truncated: the file ends at byte {self._size} "
                f"before its part at offset {pos}"
            )
        magic, lrec = _REC_HEAD.unpack(head)
        cflag, length = lrec >> 29, lrec & _LEN_MASK
        if magic != MAGIC:
            if first:
                src = f"offset {offset}"
                if key is not None and self.idx_path is not None:
                    src = f"offset {offset} for key {key} in {self.idx_path}"
                raise DataFormatError(
                    f"{src} does not point at a record in {self.rec_path} "
                    f"(found 0x{magic:08X}, expected magic 0x{MAGIC:08X})"
                )
            raise DataFormatError(
                f"{self._where(offset, key)}: part at offset {pos} has a bad magic word "
                f"0x{magic:08X}; the file is corrupt"
            )
        if first and cflag not in (0, 1):
            raise DataFormatError(
                f"{self._where(offset, key)} points at the middle of a multi-part record "
                f"(cflag {cflag}); the index does not match {self.rec_path}"
            )
        if not first and cflag not in (2, 3):
            raise DataFormatError(
                f"{self._where(offset, key)}: part at offset {pos} has cflag {cflag}, "
                "expected a continuation (2 or 3); the file is corrupt"
            )
        return cflag, length

    def _read_part(self, pos: int, length: int, offset: int, key: int | None) -> bytes:
        fd = self._handle()
        # Check the size first so a corrupt length never triggers a huge allocation.
        data = os.pread(fd, length, pos + 8) if pos + 8 + length <= self._size else b""
        if len(data) < length:
            raise DataFormatError(
                f"{self._where(offset, key)} is truncated: needs {length} payload bytes "
                f"from offset {pos + 8} but {self.rec_path} ends at byte {self._size}"
            )
        return data

    def _read_record(self, offset: int, key: int | None = None) -> tuple[bytes, int]:
        """Read the (possibly multi-part) record at ``offset``; return (payload, next offset)."""
        parts: list[bytes] = []
        pos, first = offset, True
        while True:
            cflag, length = self._part_header(pos, offset, key, first)
            parts.append(self._read_part(pos, length, offset, key))
            pos += 8 + _pad4(length)
            if cflag in (0, 3):
                break
            first = False
        # The writer dropped the magic word at each split; put it back.
        return _MAGIC_BYTES.join(parts), pos

    def read(self, key: int) -> bytes:
        """Return the payload stored under ``key`` (multi-part records joined).

        Raises:
            KeyError: The key is not in the index.
            DataFormatError: The record is missing, corrupt or truncated.
        """
        key = int(key)
        payload, _ = self._read_record(self.offset_of(key), key)
        return payload

    def read_at(self, offset: int) -> bytes:
        """Return the payload of the record whose magic word is at byte ``offset``."""
        payload, _ = self._read_record(int(offset))
        return payload

    def read_prefix(self, key: int, nbytes: int) -> bytes:
        """Return up to the first ``nbytes`` of a payload, reading only those bytes.

        Used to collect labels from headers without touching image bytes.
        """
        key = int(key)
        return self.read_prefix_at(self.offset_of(key), nbytes, key)

    def read_prefix_at(self, offset: int, nbytes: int, key: int | None = None) -> bytes:
        """Like :meth:`read_prefix` for the record at ``offset`` (``key`` only names it in errors)."""
        cflag, length = self._part_header(offset, offset, key, True)
        if cflag == 0 or length >= nbytes:
            return self._read_part(offset, min(length, nbytes), offset, key)
        # The header itself was split (magic word inside it): read the whole record.
        return self._read_record(offset, key)[0][:nbytes]

    def scan_offsets(self) -> Iterator[int]:
        """Yield the offset of every record in file order, reading only part headers."""
        pos = 0
        self._handle()
        size = self._size
        while pos < size:
            start, first = pos, True
            while True:
                cflag, length = self._part_header(pos, start, None, first)
                if pos + 8 + length > size:
                    raise DataFormatError(
                        f"{self._where(start, None)} is truncated: needs {length} payload "
                        f"bytes from offset {pos + 8} but the file ends at byte {size}"
                    )
                pos += 8 + _pad4(length)
                if cflag in (0, 3):
                    break
                first = False
            yield start

    def __iter__(self) -> Iterator[bytes]:
        """Yield every payload in file order (the ``.idx`` is not used)."""
        pos = 0
        self._handle()
        while pos < self._size:
            payload, pos = self._read_record(pos)
            yield payload


def _parse_idx(idx_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Parse ``key<TAB>offset`` lines into two int64 arrays.

    Well-formed files (one tab per line, as every writer produces) take a vectorised path;
    anything else goes through a line-by-line parse that names the first bad line.
    """
    text = idx_path.read_text(encoding="ascii", errors="replace")
    num_lines = text.count("\n") + (1 if text and not text.endswith("\n") else 0)
    flat: np.ndarray | None = None
    if text.count("\t") == num_lines:
        try:
            flat = np.fromstring(text, dtype=np.int64, sep=" ")  # any whitespace separates
        except ValueError:
            flat = None
    if flat is None or flat.size != 2 * num_lines:
        flat = _parse_idx_slow(text, idx_path)
    arr = flat.reshape(-1, 2)
    keys, offsets = arr[:, 0].copy(), arr[:, 1].copy()
    if len(offsets) and offsets.min() < 0:
        bad = int(np.argmax(offsets < 0))
        raise DataFormatError(f"{idx_path}: negative offset for key {keys[bad]}")
    return keys, offsets


def _parse_idx_slow(text: str, idx_path: Path) -> np.ndarray:
    values: list[int] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split()
        try:
            if len(fields) != 2:
                raise ValueError
            values += [int(fields[0]), int(fields[1])]
        except ValueError:
            raise DataFormatError(
                f"{idx_path}, line {lineno}: expected 'key<TAB>offset', got {line[:80]!r}"
            ) from None
    return np.array(values, dtype=np.int64)


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
        self._rec.write(data)
        self._pos += len(data)
        if self._idx is not None:
            self._idx.write(f"{key}\t{offset}\n")
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


def encode_image(img_rgb: np.ndarray, quality: int = 95, img_fmt: str = ".jpg") -> bytes:
    """Encode an RGB (or grey) uint8 image to JPEG/PNG bytes as OpenCV writes them (BGR order)."""
    img = np.asarray(img_rgb)
    if img.dtype != np.uint8 or not (img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 3)):
        raise ValueError(f"expected a uint8 [H, W, 3] RGB image, got {img.dtype} {img.shape}")
    fmt = img_fmt.lower()
    if fmt in (".jpg", ".jpeg"):
        params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    elif fmt == ".png":
        params = []
    else:
        raise ValueError(f"img_fmt must be '.jpg' or '.png', got {img_fmt!r}")
    bgr = img if img.ndim == 2 else np.ascontiguousarray(img[:, :, ::-1])
    ok, buf = cv2.imencode(fmt, bgr, params)
    if not ok:
        raise ValueError(f"OpenCV failed to encode a {img.shape} image as {fmt}")
    return buf.tobytes()


def decode_image(buf: bytes | bytearray | np.ndarray, where: str) -> np.ndarray:
    """Decode JPEG/PNG bytes to an RGB uint8 ``[H, W, 3]`` array.

    Raises:
        DataFormatError: The bytes are not a decodable image (``where`` names the source).
    """
    arr = np.frombuffer(buf, dtype=np.uint8) if not isinstance(buf, np.ndarray) else buf
    if arr.size == 0:
        raise DataFormatError(f"{where}: empty image data")
    try:
        img = cv2.imdecode(arr.reshape(-1).astype(np.uint8, copy=False), cv2.IMREAD_COLOR)
    except cv2.error as exc:
        raise DataFormatError(f"{where}: cannot decode image ({arr.size} bytes): {exc}") from None
    if img is None:
        raise DataFormatError(f"{where}: cannot decode image ({arr.size} bytes, corrupt or not JPEG/PNG)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


# --------------------------------------------------------------------------- dataset


class RecordIODataset(Dataset):
    """Face training set in insightface RecordIO form: ``root/train.rec``, ``train.idx``, ``property``.

    Two layouts are understood:

    * insightface: key 0 is a header (flag 2, label vector ``[A, B]``, no image); images
      are keys ``1..A-1``; keys ``A..B-1`` hold one ``[start, end)`` record per identity;
    * plain im2rec: every key in ``train.idx`` is an image record.

    ``__getitem__`` returns ``(image, label)``: an RGB uint8 ``[H, W, 3]`` array (or
    ``transform(image)``) and an int. The dataset pickles cheaply into DataLoader workers;
    each process opens its own file descriptor.

    Args:
        root: Folder holding ``train.rec``, ``train.idx`` and optionally ``property``.
        transform: Called on the RGB uint8 image; its result is returned instead.
        skip_corrupt: If True, an unreadable record (truncated, undecodable image) is
            logged and the next readable sample is returned instead; skips are counted in
            ``self.skipped`` (per process). Labels out of range always raise.
    """

    def __init__(
        self,
        root: str | Path,
        transform: Callable[[np.ndarray], Any] | None = None,
        skip_corrupt: bool = False,
    ) -> None:
        self.root = Path(root)
        self.transform = transform
        self.skip_corrupt = skip_corrupt
        self.skipped = 0
        self.rec_path = self.root / "train.rec"
        self.idx_path = self.root / "train.idx"
        self.property_path = self.root / "property"
        self.reader = RecordIOReader(self.rec_path, self.idx_path)
        self.image_size: tuple[int, int] | None = None
        self._property_classes: int | None = None
        if self.property_path.is_file():
            self._property_classes, self.image_size = _parse_property(self.property_path)
        self.layout = "im2rec"
        self.identity_keys: range | None = None
        self._num_classes: int | None = None
        self._raw_labels: np.ndarray | None = None
        self._labels: np.ndarray | None = None
        self.keys: np.ndarray = self._detect_layout()

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
        if first_id > _MAX_EXACT_LABEL:
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

    def __len__(self) -> int:
        return len(self.keys)

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
                self._check_label(float(raw[i]), int(self.keys[i]))
            self._labels = raw.astype(np.int64)
        return self._labels

    def _read_raw_labels(self) -> np.ndarray:
        if self._raw_labels is None:
            offsets = self.reader.offsets_of(self.keys)
            raw = np.empty(len(self.keys), dtype=np.float64)
            read = self.reader.read_prefix_at
            # Visit records in file order so the disk reads sequentially.
            for i in np.argsort(offsets, kind="stable").tolist():
                key = int(self.keys[i])
                prefix = read(int(offsets[i]), HEADER_SIZE + 4, key)
                raw[i] = _first_label(prefix, f"{self.rec_path}: key {key}")
            self._raw_labels = raw
        return self._raw_labels

    def _check_label(self, label: float, key: int) -> int:
        n = self.num_classes
        if not (np.isfinite(label) and float(label).is_integer() and 0 <= label < n):
            raise DataFormatError(
                f"{self.rec_path}: record for key {key} has label {label}, outside "
                f"[0, {n}) (num_classes={n}); check {self.property_path} or the data"
            )
        return int(label)

    def _load(self, key: int) -> tuple[np.ndarray, float]:
        """Read and decode one record; DataFormatError here means the record is corrupt."""
        where = f"{self.rec_path}: key {key}"
        head = unpack_header(self.reader.read(key), where)
        label = head.label if head.flag == 0 else head.label[0]  # type: ignore[index]
        return decode_image(head.rest, where), float(label)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        n = len(self)
        index = operator.index(index)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"index {index} out of range for {n} samples")
        for step in range(n if self.skip_corrupt else 1):
            key = int(self.keys[(index + step) % n])
            try:
                image, raw_label = self._load(key)
            except DataFormatError as exc:
                if not self.skip_corrupt:
                    raise
                self.skipped += 1
                log.warning("skipping corrupt record: %s", exc)
                continue
            # A label outside [0, num_classes) is a configuration error: never skipped.
            label = self._check_label(raw_label, key)
            if self.transform is not None:
                return self.transform(image), label
            return image, label
        raise DataFormatError(f"{self.rec_path}: no readable sample (all {n} records failed)")


def _first_label(payload_prefix: bytes, where: str) -> float:
    if len(payload_prefix) < HEADER_SIZE:
        raise DataFormatError(f"{where}: payload shorter than the {HEADER_SIZE}-byte header")
    flag, label, _, _ = _HEADER.unpack_from(payload_prefix)
    if flag == 0:
        return float(label)
    if len(payload_prefix) < HEADER_SIZE + 4:
        raise DataFormatError(f"{where}: header announces a label vector but the record ends")
    return float(struct.unpack_from("<f", payload_prefix, HEADER_SIZE)[0])


def _parse_property(path: Path) -> tuple[int, tuple[int, int] | None]:
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
    return num_classes, size


# --------------------------------------------------------------------------- writing


def write_recordio(
    root: str | Path,
    samples: Iterable[tuple[np.ndarray, int]],
    num_classes: int | None = None,
    img_fmt: str = ".jpg",
    quality: int = 95,
    image_size: tuple[int, int] | None = None,
) -> int:
    """Write ``root/train.rec``, ``train.idx`` and ``property`` in the insightface layout.

    Samples are streamed (constant memory), so they must come **sorted by label**
    (non-decreasing): each identity's images then form the contiguous key range its
    identity record points at. Identity records are written for every class in
    ``[0, num_classes)``, including classes without images (empty range).

    Args:
        root: Output folder (created if needed; existing files are overwritten).
        samples: ``(rgb_uint8_image, label)`` pairs, labels non-decreasing.
        num_classes: Number of classes; defaults to the largest label + 1.
        img_fmt: ``'.jpg'`` or ``'.png'``.
        quality: JPEG quality.
        image_size: ``(height, width)`` for ``property``; defaults to the first image's.
            Every image must have this size.

    Returns:
        The number of images written.

    Raises:
        ValueError: Unsorted or negative labels, mixed image sizes, ``num_classes`` too small.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rec_path, idx_path = root / "train.rec", root / "train.idx"
    # Class c's images are keys starts[c]..starts[c+1]-1; filled as labels stream by.
    starts: list[int] = []
    key = 1
    last_label = -1
    size = image_size
    with RecordIOWriter(rec_path, idx_path) as writer:
        # Placeholder header: its [A, B] is only known at the end and is patched in place
        # (same length, so no offset moves).
        header_offset = writer.write(0, pack_header([0.0, 0.0]))
        for i, (img, label) in enumerate(samples):
            label = operator.index(label)
            if label < last_label:
                raise ValueError(
                    f"write_recordio needs samples sorted by label: sample {i} has label "
                    f"{label} after label {last_label}"
                )
            if label < 0 or label >= _MAX_EXACT_LABEL:
                raise ValueError(f"sample {i}: label {label} outside [0, 2**24)")
            img = np.asarray(img)
            if size is None:
                size = (int(img.shape[0]), int(img.shape[1]))
            if tuple(img.shape[:2]) != tuple(size):
                raise ValueError(
                    f"sample {i}: image is {img.shape[0]}x{img.shape[1]}, expected "
                    f"{size[0]}x{size[1]} (image_size / first image)"
                )
            while len(starts) <= label:
                starts.append(key)
            writer.write(key, pack_image(img, float(label), id=key, quality=quality, img_fmt=img_fmt))
            last_label = label
            key += 1
        num_images = key - 1
        seen_classes = last_label + 1
        if num_classes is None:
            num_classes = seen_classes
        elif num_classes < seen_classes:
            raise ValueError(f"num_classes={num_classes} but the samples have label {last_label}")
        while len(starts) < num_classes:
            starts.append(key)
        starts.append(key)  # end of the last class
        first_identity = key
        for c in range(num_classes):
            writer.write(first_identity + c, pack_header([starts[c], starts[c + 1]], id=first_identity + c))
        end = first_identity + num_classes
    if size is None:
        raise ValueError("no samples and no image_size: cannot write the property file")
    header = pack_header([float(first_identity), float(end)])
    assert _MAGIC_BYTES not in header  # positive floats never contain the magic word
    with open(rec_path, "r+b") as f:
        f.seek(header_offset + 8)
        f.write(header)
    (root / "property").write_text(f"{num_classes},{size[0]},{size[1]}\n", encoding="ascii")
    return num_images
