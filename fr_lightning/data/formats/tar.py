"""A lean reader of the plain ``ustar`` tar members that WebDataset shards consist of.

Python's ``tarfile`` (which ``webdataset.tar_file_iterator`` wraps) spends more CPU on each
member header than OpenCV spends decoding a 112×112 JPEG (``benchmarks/data_throughput.py``).
Shards hold only regular files with short names, so this reader parses those headers directly
and hands ``{"fname", "data"}`` dicts to webdataset's ``group_by_keys`` exactly as
``tar_file_iterator`` would. It checks each header's ``ustar`` magic and checksum and each
member's length against the stream. Per-member pax headers (which ``webdataset.TarWriter``
writes for a float ``mtime``) are read for their ``path`` and ``size``; global pax headers are
skipped. Anything else (GNU long names, sparse or base-256 sizes, links) raises
:class:`UnsupportedTar`, and the caller reads that shard with webdataset's ``tarfile`` path instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, Any

from fr_lightning.data.errors import DataFormatError

__all__ = ["UnsupportedTar", "ustar_members"]

_BLOCK = 512
_ZERO = bytes(_BLOCK)


class UnsupportedTar(Exception):
    """A tar feature this reader leaves to ``tarfile`` (the message says which)."""


def _read(stream: IO[bytes], n: int) -> bytes:
    data = stream.read(n)
    if len(data) == n or not data:
        return data
    parts = [data]
    got = len(data)
    while got < n:  # some fsspec streams return short reads
        more = stream.read(n - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def _octal(field: bytes, what: str, where: str) -> int:
    if field[:1] and field[0] & 0x80:
        raise UnsupportedTar(f"{where}: base-256 {what}")
    text = field.strip(b"\0 ")
    try:
        return int(text or b"0", 8)
    except ValueError:
        raise DataFormatError(f"{where}: bad octal {what} field {bytes(field)!r}") from None


def _pax(data: bytes, where: str) -> dict[bytes, bytes]:
    """Records ``b"<len> key=value\\n"`` of a pax extended header."""
    out: dict[bytes, bytes] = {}
    pos = 0
    while pos < len(data) and data[pos] != 0:
        space = data.find(b" ", pos)
        try:
            length = int(data[pos:space])
        except ValueError:
            raise DataFormatError(f"{where}: bad pax record") from None
        key, _, value = data[space + 1 : pos + length - 1].partition(b"=")
        out[key] = value
        pos += length
    return out


def ustar_members(stream: IO[bytes], url: str) -> Iterator[dict[str, Any]]:
    """Yield ``{"fname", "data", "__url__"}`` for each regular file of a tar stream, in order.

    Metadata members named ``__...__`` are skipped, as webdataset does.

    Raises:
        DataFormatError: A header with a bad checksum or magic, or a member cut short (names the
            shard and the byte offset).
        UnsupportedTar: A member type or header extension this reader does not handle.
    """
    pos = 0
    pax: dict[bytes, bytes] = {}
    while True:
        header = _read(stream, _BLOCK)
        if not header or header == _ZERO:
            return
        where = f"{url}: tar header at byte {pos}"
        if len(header) < _BLOCK:
            raise DataFormatError(f"{where}: truncated ({len(header)} of 512 bytes)")
        if header[257:262] != b"ustar":
            raise DataFormatError(f"{where}: no ustar magic (found {bytes(header[257:263])!r}); damaged or not a tar file")
        stored = _octal(header[148:156], "checksum", where)
        actual = sum(header) - sum(header[148:156]) + 8 * 32
        if stored != actual:
            raise DataFormatError(f"{where}: checksum {stored} != {actual}; the header is damaged")
        size = int(pax[b"size"]) if b"size" in pax else _octal(header[124:136], "size", where)
        kind = header[156:157]
        name = header[0:100].split(b"\0", 1)[0]
        prefix = header[345:500].split(b"\0", 1)[0]
        if prefix:
            name = prefix + b"/" + name
        name = pax.get(b"path", name)
        padded = (size + _BLOCK - 1) & ~(_BLOCK - 1)
        data = _read(stream, padded)
        if len(data) < padded:
            raise DataFormatError(f"{where}: member {name!r} needs {size} bytes, the stream ends after {len(data)}")
        pos += _BLOCK + padded
        if kind == b"x":  # applies to the next member only
            pax = _pax(data[:size], where)
            continue
        pax = {}
        if kind == b"g":
            continue
        if kind in (b"0", b"\0"):
            fname = name.decode("utf-8")
            if "/" not in fname and fname.startswith("__") and fname.endswith("__"):
                continue
            yield {"fname": fname, "data": data[:size], "__url__": url}
        elif kind != b"5":  # directories carry nothing
            raise UnsupportedTar(f"{where}: member type {kind!r}")
