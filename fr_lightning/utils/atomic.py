"""Atomic file writes: write a temporary file next to the target, flush it to disk, rename.

A process killed mid-write leaves the previous file intact (``os.replace`` is atomic on POSIX
within one file system) and at most a stray ``.<name>.tmp-<pid>`` file, never a torn target.
A failed write (a full disk, a refused input) removes the temporary file and re-raises; an
``OSError`` is re-raised naming the file it was writing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

__all__ = ["AtomicFiles", "atomic_write", "temp_name", "write_json_atomic"]


def temp_name(path: str | Path) -> Path:
    """The temporary name ``path`` is written under: ``.<name>.tmp-<pid>`` in the same folder."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _named(exc: OSError, path: Path) -> OSError:
    """``exc`` with ``path`` as its file name (``[Errno 28] No space left on device: 'path'``)."""
    if exc.filename is not None or exc.errno is None:
        return exc
    return type(exc)(exc.errno, exc.strerror or str(exc), str(path))


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], Any]) -> Path:
    """Call ``write(file)`` on a temporary file and rename it to ``path`` once flushed and synced.

    Raises:
        OSError: Writing failed (e.g. ``ENOSPC``); the message names ``path``, the previous file
            of that name is untouched and the temporary file is gone.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path)
    tracked: _Tracked | None = None
    try:
        with open(tmp, "wb") as f:
            tracked = _Tracked(f)
            write(tracked)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _named(exc, path) from exc
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if tracked is not None and tracked.error is not None:
            # A writer that swallows the OSError and fails otherwise (torch.save's zip writer
            # raises "unexpected pos" from its __exit__) still reports the disk's error.
            raise _named(tracked.error, path) from exc
        raise
    return path


class _Tracked:
    """A file proxy that remembers the first ``OSError`` its ``write`` raised."""

    def __init__(self, f: IO[bytes]) -> None:
        self._f = f
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            return self._f.write(data)
        except OSError as exc:
            if self.error is None:
                self.error = exc
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)


def write_json_atomic(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented JSON, atomically."""
    text = json.dumps(data, indent=2, sort_keys=False, allow_nan=True) + "\n"
    return atomic_write(path, lambda f: f.write(text.encode()))


class AtomicFiles:
    """The files of one output (``train.rec``, ``train.idx``, ``property``) written under temporary
    names and renamed into place together when the block ends without an exception.

    On an exception every temporary file is removed and the files already at the final names
    (a previous good output) are left as they were. The renames run back to back after all
    data is synced, so only a kill inside that microsecond window can mix old and new files.

    Args:
        root: Folder the files go into (created).

    Example::

        with AtomicFiles(out) as files:
            write_rec(files.path("train.rec"))
            write_idx(files.path("train.idx"))
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._names: list[str] = []

    def path(self, name: str) -> Path:
        """The temporary path to write ``root/name`` to (renamed to ``root/name`` on success)."""
        if name not in self._names:
            self._names.append(name)
        return temp_name(self.root / name)

    def commit(self) -> None:
        """Sync every temporary file, then rename each to its final name (in registration order)."""
        try:
            for name in self._names:
                _fsync(temp_name(self.root / name))
        except OSError as exc:
            self.discard()
            raise _named(exc, self.root / name) from exc
        for name in self._names:
            os.replace(temp_name(self.root / name), self.root / name)
        self._names = []

    def discard(self) -> None:
        """Remove every temporary file (final names are not touched)."""
        for name in self._names:
            temp_name(self.root / name).unlink(missing_ok=True)
        self._names = []

    def __enter__(self) -> AtomicFiles:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.commit()
            return
        names = list(self._names)
        self.discard()
        if isinstance(exc, OSError) and exc.errno is not None:
            # Name the output the user asked for, not the temporary file that failed.
            final = {str(temp_name(self.root / n)): self.root / n for n in names}
            target = final.get(str(exc.filename), self.root) if exc.filename is not None else self.root
            if exc.filename is None or str(exc.filename) in final:
                raise type(exc)(exc.errno, exc.strerror or str(exc), str(target)) from exc
