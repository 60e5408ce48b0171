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

__all__ = ["UnsupportedTar", "ustar_members", "ustar_samples"]

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
            length = int(data[pos:space]) if space > pos else 0
        except ValueError:
            length = 0
        # A record is at least "<len> k=\n" and ends inside the header: no zero-length loop.
        if space < 0 or length < space - pos + 3 or pos + length > len(data):
            raise DataFormatError(f"{where}: bad pax record at byte {pos} of the extended header")
        key, _, value = data[space + 1 : pos + length - 1].partition(b"=")
        out[key] = value
        pos += length
    return out


class _Blocks:
    """Reads a stream in large blocks and hands out exact-size pieces (one ``read`` per MiB, not two per member)."""

    CHUNK = 1 << 20

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.buf = b""
        self.pos = 0

    def take(self, n: int) -> bytes:
        """The next ``n`` bytes (fewer only at the end of the stream)."""
        end = self.pos + n
        if end > len(self.buf):
            rest = self.buf[self.pos :]
            parts = [rest]
            have = len(rest)
            # Read at most a chunk at a time: ``n`` comes from a member header, and one read of
            # ``n`` bytes would allocate them all even when the stream holds far fewer.
            while have < n:
                more = _read(self.stream, min(max(n - have, self.CHUNK), self.CHUNK))
                if not more:
                    break
                parts.append(more)
                have += len(more)
            self.buf = b"".join(parts)
            self.pos, end = 0, n
        out = self.buf[self.pos : end]
        self.pos = end
        return out


def ustar_members(stream: IO[bytes], url: str) -> Iterator[dict[str, Any]]:
    """Yield ``{"fname", "data", "__url__"}`` for each regular file of a tar stream, in order.

    Metadata members named ``__...__`` are skipped, as webdataset does.

    Raises:
        DataFormatError: A header with a bad checksum or magic, or a member cut short (names the
            shard and the byte offset).
        UnsupportedTar: A member type or header extension this reader does not handle.
    """
    for fname, data in _members(stream, url):
        yield {"fname": fname, "data": data, "__url__": url}


def ustar_samples(stream: IO[bytes], url: str) -> Iterator[dict[str, Any]]:
    """The members of a tar stream grouped into samples exactly as webdataset's ``group_by_keys``
    groups :func:`ustar_members` (``{"__key__", "__url__", <lower-case suffix>: bytes, ...}``),
    without its per-member dicts.

    Raises:
        DataFormatError: as :func:`ustar_members`, or a member name repeated inside a sample.
        UnsupportedTar: as :func:`ustar_members`.
    """
    sample: dict[str, Any] | None = None
    key: str | None = None
    for fname, data in _members(stream, url):
        slash = fname.rfind("/") + 1
        dot = fname.find(".", slash)
        if dot <= slash or "/" in fname[dot:]:
            continue  # no key/suffix split (webdataset's base_plus_ext skips these too)
        prefix, suffix = fname[:dot], fname[dot + 1 :].lower()
        if prefix != key:
            if sample is not None:
                yield sample
            sample, key = {"__key__": prefix, "__url__": url}, prefix
        elif suffix in sample:  # type: ignore[operator]
            raise DataFormatError(f"{url}: member {fname!r} appears twice in sample {prefix!r}")
        sample[suffix] = data  # type: ignore[index]
    if sample is not None:
        yield sample


def _members(stream: IO[bytes], url: str) -> Iterator[tuple[str, bytes]]:
    """``(name, data)`` of each regular file of a tar stream (see :func:`ustar_members`)."""
    blocks = _Blocks(stream)
    pos = 0
    pax: dict[bytes, bytes] = {}
    while True:
        header = blocks.take(_BLOCK)
        if not header or header == _ZERO:
            return
        if len(header) < _BLOCK:
            raise DataFormatError(f"{url}: tar header at byte {pos}: truncated ({len(header)} of 512 bytes)")
        if header[257:262] != b"ustar":
            raise DataFormatError(
                f"{url}: tar header at byte {pos}: no ustar magic (found {bytes(header[257:263])!r}); damaged or not a tar file"
            )
        where = f"{url}: tar header at byte {pos}"
        stored = _octal(header[148:156], "checksum", where)
        actual = sum(header) - sum(header[148:156]) + 8 * 32
        if stored != actual:
            raise DataFormatError(f"{where}: checksum {stored} != {actual}; the header is damaged")
        try:
            size = int(pax[b"size"]) if b"size" in pax else _octal(header[124:136], "size", where)
        except ValueError:
            raise DataFormatError(f"{where}: bad pax size {pax[b'size'][:20]!r}") from None
        if size < 0:
            raise DataFormatError(f"{where}: negative member size {size}")
        kind = header[156:157]
        name = header[0:100].split(b"\0", 1)[0]
        if header[345] != 0:
            name = header[345:500].split(b"\0", 1)[0] + b"/" + name
        name = pax.get(b"path", name)
        padded = (size + _BLOCK - 1) & ~(_BLOCK - 1)
        data = blocks.take(padded)
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
            try:
                fname = name.decode("utf-8")
            except UnicodeDecodeError:
                raise DataFormatError(f"{where}: member name {bytes(name[:60])!r} is not UTF-8") from None
            if "/" not in fname and fname.startswith("__") and fname.endswith("__"):
                continue
            yield fname, data[:size] if size != padded else data
        elif kind != b"5":  # directories carry nothing
            raise UnsupportedTar(f"{where}: member type {kind!r}")
