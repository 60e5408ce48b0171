"""Random-access and sequential reading of MXNet ``.rec`` files and their ``.idx`` index.

Files are read with ``os.pread`` on a descriptor opened lazily per process, so a reader can be
pickled into DataLoader workers or used after a fork. Every record's magic word, part flags and
length are checked against the file, and the index's offsets against the file size.
"""

from __future__ import annotations

import operator
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from fr_lightning.data.errors import DataFormatError
from fr_lightning.data.formats.recordio import _LEN_MASK, _MAGIC_BYTES, _REC_HEAD, MAGIC, _pad4

__all__ = ["RecordIOReader"]

_INT64_MAX = 2**63 - 1


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
            self._check_offsets(keys, offsets)
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        # For a repeated key keep its last line (stable sort puts it last), like MXNet's dict.
        last = np.ones(len(sorted_keys), dtype=bool)
        last[:-1] = sorted_keys[1:] != sorted_keys[:-1]
        self._sorted_keys = sorted_keys[last]
        self._sorted_offsets = offsets[order][last]
        self._keys, self._offsets = keys, offsets

    def _check_offsets(self, keys: np.ndarray, offsets: np.ndarray) -> None:
        """Every ``.idx`` offset must leave room for a record header inside the ``.rec`` file."""
        if not len(offsets):
            return
        size = self.rec_path.stat().st_size
        bad = offsets > size - 8  # not offsets + 8: an offset near 2**63 would wrap around
        if bad.any():
            i = int(np.argmax(bad))
            raise DataFormatError(
                f"{self.idx_path}: offset {int(offsets[i])} for key {int(keys[i])} is past the end of "
                f"{self.rec_path} ({size} bytes; {int(bad.sum())} offsets out of range); is the .rec "
                "file truncated or the .idx from another file?"
            )

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

    def read_at(self, offset: int, key: int | None = None, limit: int | None = None) -> bytes:
        """Return the payload of the record whose magic word is at byte ``offset`` (multi-part records joined).

        Args:
            offset: Where the record starts (its ``.idx`` offset).
            key: The record's key, only to name it in errors.
            limit: Return only the first ``limit`` payload bytes, reading no more than those
                (labels are collected from headers this way, without touching image bytes).

        Raises:
            DataFormatError: The record is missing, corrupt or truncated.
        """
        offset = int(offset)
        fd = self._handle()
        parts: list[bytes] = []
        pos, first, have = offset, True, 0
        while True:
            cflag, length = self._part_header(pos, offset, key, first)
            n = length if limit is None else min(length, max(0, limit - have))
            # Check the size first so a corrupt length never triggers a huge allocation.
            data = os.pread(fd, n, pos + 8) if pos + 8 + n <= self._size else b""
            if len(data) < n:
                raise DataFormatError(
                    f"{self._where(offset, key)} is truncated: needs {n} payload bytes "
                    f"from offset {pos + 8} but {self.rec_path} ends at byte {self._size}"
                )
            parts.append(data)
            have += n
            pos += 8 + _pad4(length)
            if cflag in (0, 3) or (limit is not None and have >= limit):
                break
            have += len(_MAGIC_BYTES)  # joined back in before the next part
            first = False
        # The writer dropped the magic word at each split; put it back.
        payload = _MAGIC_BYTES.join(parts)
        return payload if limit is None else payload[:limit]

    def read(self, key: int) -> bytes:
        """Return the payload stored under ``key`` (:meth:`read_at` its ``.idx`` offset).

        Raises:
            KeyError: The key is not in the index.
            DataFormatError: The record is missing, corrupt or truncated.
        """
        key = int(key)
        return self.read_at(self.offset_of(key), key)

    def read_prefix(self, key: int, nbytes: int) -> bytes:
        """Return up to the first ``nbytes`` of the payload under ``key``, reading only those bytes."""
        key = int(key)
        return self.read_at(self.offset_of(key), key, limit=nbytes)

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
        for offset in self.scan_offsets():
            yield self.read_at(offset)


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
    # numpy saturates numbers beyond int64 to its limits: let the slow path name them.
    if flat is None or flat.size != 2 * num_lines or bool(((flat >= _INT64_MAX) | (flat <= -_INT64_MAX)).any()):
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
            pair = [int(fields[0]), int(fields[1])]
        except ValueError:
            raise DataFormatError(
                f"{idx_path}, line {lineno}: expected 'key<TAB>offset', got {line[:80]!r}"
            ) from None
        if any(not -_INT64_MAX < v < _INT64_MAX for v in pair):
            raise DataFormatError(f"{idx_path}, line {lineno}: key or offset beyond the 64-bit range: {line[:80]!r}")
        values += pair
    return np.array(values, dtype=np.int64)
