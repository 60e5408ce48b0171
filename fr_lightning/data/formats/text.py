"""Text side files (landmarks, groups, IJB meta lists) read line by line, with errors that name the line."""

from __future__ import annotations

from pathlib import Path

from fr_lightning.data.errors import DataFormatError

__all__ = ["text_lines"]


def text_lines(path: Path) -> list[tuple[int, str]]:
    """``(1-based line number, line)`` of a UTF-8 text file; bytes that are not UTF-8 raise naming their line.

    Line ends are read as ``open()`` in text mode reads them (``\\n``, ``\\r\\n`` and ``\\r``).
    """
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        lineno = data.count(b"\n", 0, exc.start) + 1
        raise DataFormatError(f"{path}, line {lineno}: not UTF-8 text") from None
    return list(enumerate(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"), 1))
