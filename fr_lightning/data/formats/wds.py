"""WebDataset tar shards of face crops: the layout, the shard index and raw sample reading (writing: ``wds_write``).

A shard is a plain POSIX tar file (``tar tf shard-000000.tar`` lists it). Each sample is a group
of consecutive members sharing a key (the part of the name before the first dot):

* ``{key}.jpg`` or ``{key}.png``: the encoded image, bytes exactly as they came (never re-encoded);
* ``{key}.cls``: the label as decimal ASCII;
* ``{key}.json`` (optional): ``{"landmarks": [[x, y] * 5], "group": g}``.

Next to the shards, ``shards.json`` follows the ``wids-shard-index-v1`` layout that webdataset's
indexed reader uses (``shardlist`` of ``{"url", "nsamples", "filesize"}``, urls relative to the
folder) and adds an ``fr_lightning`` block (``num_classes``, ``image_size``, ``num_samples``,
``has_landmarks``, ``has_group``). The per-shard sample counts are what lets every rank and worker
compute the same epoch plan without opening a shard.

Reading goes through the ``webdataset`` package (``tar_file_expander`` + ``group_by_keys``) on a
stream opened from a local path or any fsspec URI. Checks: the tar header checksums (tarfile),
each shard's size against ``filesize`` in the index, each sample's members (one image, one
label), and the number of samples against ``nsamples`` (a damaged tar header ends a stream early;
the count catches it).
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from fr_lightning.data.errors import DataFormatError

__all__ = [
    "INDEX_NAME",
    "IMAGE_EXTS",
    "ShardIndex",
    "WdsSample",
    "read_shard_index",
    "iter_shard",
    "raw_samples",
    "parse_sample",
    "join_uri",
    "image_ext",
]

INDEX_NAME = "shards.json"
INDEX_KIND = "wids-shard-index-v1"
#: Image member suffixes a sample may use (the first one present is the image).
IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")


def _is_local(uri: str) -> bool:
    return "://" not in uri or uri.startswith("file://")


def _local_path(uri: str) -> Path:
    return Path(uri[len("file://") :] if uri.startswith("file://") else uri)


def join_uri(uri: str, name: str) -> str:
    """``uri/name`` for a local folder or an fsspec URI."""
    return str(_local_path(uri) / name) if _is_local(uri) else uri.rstrip("/") + "/" + name


def _open(uri: str) -> IO[bytes]:
    """Open a local path or fsspec URI for streaming reads."""
    if _is_local(uri):
        return open(_local_path(uri), "rb")  # noqa: SIM115 - closed by the caller
    import fsspec  # a dependency of lightning

    return fsspec.open(uri, "rb").open()


def _size(uri: str) -> int:
    if _is_local(uri):
        return _local_path(uri).stat().st_size
    import fsspec

    fs, path = fsspec.core.url_to_fs(uri)
    return int(fs.size(path))


def image_ext(buf: bytes) -> str:
    """``jpg`` or ``png`` from the first bytes of an encoded image (``png`` for anything else OpenCV wrote)."""
    if buf[:3] == b"\xff\xd8\xff":
        return "jpg"
    if buf[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if buf[:4] == b"RIFF" and buf[8:12] == b"WEBP":
        return "webp"
    raise ValueError(f"image bytes are neither JPEG, PNG nor WebP (starts with {bytes(buf[:8])!r})")


# --------------------------------------------------------------------------- index


@dataclass(frozen=True)
class ShardIndex:
    """The parsed ``shards.json`` of a shard folder."""

    uri: str
    files: tuple[str, ...]
    sizes: np.ndarray  # samples per shard (int64)
    filesizes: tuple[int | None, ...]
    num_classes: int
    image_size: tuple[int, int] | None
    has_landmarks: bool
    has_group: bool

    @property
    def num_samples(self) -> int:
        return int(self.sizes.sum())

    @property
    def starts(self) -> np.ndarray:
        """Global sample id of each shard's first sample (int64)."""
        return np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(np.int64)

    def url(self, shard: int) -> str:
        """Full path / URI of shard ``shard``."""
        return join_uri(self.uri, self.files[shard])


def _count(value: Any, field: str) -> int:
    """A non-negative JSON integer below 2**62 (a count, a size in bytes or pixels)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**62:
        raise ValueError(f"{field} is {str(value)[:40]!r}, expected a non-negative integer")
    return value


def read_shard_index(uri: str | Path) -> ShardIndex:
    """Load and validate ``<uri>/shards.json`` (local folder or fsspec URI).

    Raises:
        DataFormatError: Missing or malformed index (the message names it and the bad field).
    """
    uri = str(uri)
    where = join_uri(uri, INDEX_NAME)
    try:
        with _open(where) as f:
            raw = json.loads(f.read())
    except FileNotFoundError:
        raise DataFormatError(f"{where}: shard index not found (write shards with `fr data convert SRC OUT --to wds`)") from None
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise DataFormatError(f"{where}: not a JSON shard index: {exc}") from None
    if not isinstance(raw, dict) or raw.get("__kind__") != INDEX_KIND:
        raise DataFormatError(f"{where}: not a shard index (__kind__ != {INDEX_KIND!r})")
    try:
        shards = raw["shardlist"]
        if not isinstance(shards, list) or not all(isinstance(s, dict) for s in shards):
            raise TypeError("shardlist must be a list of objects")
        files = tuple(str(s["url"]) for s in shards)
        counts = [_count(s["nsamples"], "nsamples") for s in shards]
        filesizes = tuple(None if s.get("filesize") is None else _count(s["filesize"], "filesize") for s in shards)
        meta = raw.get("fr_lightning", {})
        if not isinstance(meta, dict):
            raise TypeError("fr_lightning must be an object")
        size = meta.get("image_size")
        image_size = None if size is None else (_count(size[0], "image_size"), _count(size[1], "image_size"))
        num_classes = _count(meta["num_classes"], "num_classes")
        declared = meta.get("num_samples")
        declared = None if declared is None else _count(declared, "num_samples")
    except (KeyError, TypeError, ValueError, IndexError, OverflowError) as exc:
        raise DataFormatError(f"{where}: malformed shard index: missing or bad field {exc!r}") from None
    if sum(counts) >= 2**62:
        raise DataFormatError(f"{where}: the shards' nsamples add up to {sum(counts)}")
    sizes = np.array(counts, dtype=np.int64)
    for f in files:
        if "/" in f or "\\" in f or f.startswith(".") or "\0" in f or not f:
            raise DataFormatError(f"{where}: shard url {f!r} must be a plain file name inside the shard folder")
    if image_size is not None and min(image_size) <= 0:
        raise DataFormatError(f"{where}: image_size {list(image_size)} must be positive")
    if declared is not None and declared != int(sizes.sum()):
        raise DataFormatError(f"{where}: shards hold {int(sizes.sum())} samples but num_samples is {declared}")
    return ShardIndex(
        uri=uri,
        files=files,
        sizes=sizes,
        filesizes=filesizes,
        num_classes=num_classes,
        image_size=image_size,
        has_landmarks=bool(meta.get("has_landmarks", False)),
        has_group=bool(meta.get("has_group", False)),
    )


# --------------------------------------------------------------------------- reading


@dataclass
class WdsSample:
    """One raw sample of a shard: encoded image, label and optional side fields."""

    key: str
    position: int  # position of the sample inside its shard
    image: bytes
    label: int
    landmarks: np.ndarray | None
    group: int | None
    url: str  # the shard it came from


def parse_sample(raw: dict[str, Any], position: int, where: str) -> WdsSample:
    """Turn a ``group_by_keys`` dict into a :class:`WdsSample`.

    Raises:
        DataFormatError: No image member, no or a bad ``.cls``, bad ``.json`` (names shard and key).
    """
    key = str(raw.get("__key__"))
    at = f"{where}: sample {key!r}"
    image = next((raw[e] for e in IMAGE_EXTS if e in raw), None)
    if image is None:
        raise DataFormatError(f"{at} has no image member ({', '.join('.' + e for e in IMAGE_EXTS)}); members: {sorted(k for k in raw if not k.startswith('__'))}")
    if "cls" not in raw:
        raise DataFormatError(f"{at} has no .cls label member")
    try:
        label = int(raw["cls"].decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        raise DataFormatError(f"{at}: .cls is not a decimal integer ({bytes(raw['cls'][:20])!r})") from None
    landmarks = group = None
    if "json" in raw:
        try:
            meta = json.loads(raw["json"])
            if "landmarks" in meta:
                landmarks = np.asarray(meta["landmarks"], np.float32).reshape(5, 2)
            if "group" in meta:
                group = int(meta["group"])
        except (ValueError, TypeError, AttributeError) as exc:
            raise DataFormatError(f"{at}: bad .json side data: {exc}") from None
    return WdsSample(key, position, bytes(image), label, landmarks, group, where)


def raw_samples(url: str, fast: bool = True) -> Iterator[dict[str, Any]]:
    """Every sample of one shard as webdataset's ``group_by_keys`` dicts, in file order.

    Samples come from :func:`~fr_lightning.data.formats.tar.ustar_samples` (fast: the same
    grouping without per-member dicts) or, for tar features it leaves out (or ``fast=False``),
    from webdataset's ``tar_file_expander`` and ``group_by_keys``.

    Raises:
        DataFormatError: The shard is missing or its tar data is damaged (names the shard and the
            last good sample). ``tarfile`` may instead end the stream early at a damaged header,
            which only a count against the index reveals (:func:`iter_shard` does that).
    """
    from webdataset.tariterators import group_by_keys, tar_file_expander

    from fr_lightning.data.formats.tar import UnsupportedTar, ustar_samples

    done, last_key = 0, None
    if fast:
        try:
            with _open_shard(url) as stream:
                for raw in ustar_samples(stream, url):
                    done, last_key = done + 1, raw.get("__key__")
                    yield raw
            return
        except UnsupportedTar:
            pass  # read the shard again through tarfile, past the samples already given
        except DataFormatError as exc:
            after = f" after sample {last_key!r}" if last_key is not None else ""
            raise DataFormatError(f"{exc}{after}") from None
    with _open_shard(url) as stream:
        try:
            files = tar_file_expander([{"url": url, "stream": stream}], eof_value=None)
            for k, raw in enumerate(group_by_keys(files)):
                last_key = raw.get("__key__")
                if k >= done:
                    yield raw
        except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
            after = f" after sample {last_key!r}" if last_key is not None else " at its start"
            raise DataFormatError(f"{url}: damaged tar data{after}: {exc.args[0] if exc.args else exc}") from None


def _open_shard(url: str) -> IO[bytes]:
    try:
        return _open(url)
    except FileNotFoundError:
        raise DataFormatError(f"{url}: shard not found") from None


def iter_shard(
    index: ShardIndex, shard: int, start: int = 0, stop: int | None = None, tolerant: bool = False
) -> Iterator[WdsSample | DataFormatError]:
    """Yield samples ``[start, stop)`` of one shard in file order, checked against the index.

    Samples before ``start`` are read past (a tar stream cannot seek) but not parsed; reading
    stops after ``stop`` without touching the rest of the shard.

    Args:
        index: The shard index.
        shard: Shard number.
        start: First sample position to yield.
        stop: One past the last position (default: the shard's ``nsamples``).
        tolerant: Yield a :class:`DataFormatError` in place of each sample that cannot be read
            (malformed, or missing because the tar data ends early) instead of raising, so the
            caller always gets exactly ``stop - start`` items.

    Raises:
        DataFormatError: (not ``tolerant``) The shard is missing, its size differs from the index,
            its tar data is damaged, a sample is malformed, or it holds fewer samples than indexed.
    """
    url = index.url(shard)
    expected = int(index.sizes[shard])
    stop = expected if stop is None else min(stop, expected)
    if start >= stop:
        return
    problem: DataFormatError | None = None
    missing = False
    try:
        actual = _size(url)
        declared = index.filesizes[shard]
        if declared is not None and actual != declared:
            problem = DataFormatError(f"{url}: shard is {actual} bytes, {INDEX_NAME} says {declared}; truncated or replaced")
    except FileNotFoundError:
        problem, missing = DataFormatError(f"{url}: shard listed in {INDEX_NAME} is missing"), True
    if problem is not None and not tolerant:
        raise problem
    position, last_key = -1, None
    if not missing:
        samples = raw_samples(url)
        try:
            for raw in samples:
                position += 1
                last_key = raw.get("__key__")
                if position < start:
                    continue
                try:
                    yield parse_sample(raw, position, url)
                except DataFormatError as exc:
                    if not tolerant:
                        raise
                    yield exc
                if position + 1 >= stop:
                    return
        except DataFormatError as exc:  # damaged tar data: the rest of the shard is unreadable
            if not tolerant:
                raise
            problem = exc
        finally:
            samples.close()
    if problem is None:
        problem = DataFormatError(
            f"{url}: holds {position + 1} samples, {INDEX_NAME} says {expected}; a damaged tar header "
            f"ends the archive early (last good sample {last_key!r})"
        )
    if not tolerant:
        raise problem
    for _ in range(max(start, position + 1), stop):
        yield problem

