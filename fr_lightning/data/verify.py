"""``fr data verify``: read and decode every image of a dataset and report what is broken, by key.

Checks per format:

* RecordIO: every ``.idx`` offset lies inside ``.rec`` and points at a record (magic word, part
  flags, lengths); a scan of ``.rec`` finds every record the ``.idx`` lists (and counts records it
  does not list); every image record decodes, has the ``property`` image size and a label in
  ``[0, num_classes)``; in the insightface layout the identity records number ``num_classes``.
* WebDataset shards: each shard's size matches ``shards.json``, its tar headers are intact, it
  holds ``nsamples`` samples, each with one decodable image and a ``.cls`` label in range.
* Image folders and ``.bin`` verification sets: every image decodes.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np

from fr_lightning.data.errors import DataFormatError
from fr_lightning.data.formats.images import decode_image

__all__ = ["VerifyReport", "verify"]

T = TypeVar("T")
_SHOWN = 20  # bad keys listed in the summary (all are in ``report.bad``)


@dataclass
class VerifyReport:
    """What :func:`verify` found: images checked, bad images (one line each, naming file and key), other problems."""

    path: str
    kind: str
    checked: int = 0
    bad: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.bad and not self.problems

    def summary(self) -> str:
        """Human-readable report (the first few bad keys, every structural problem)."""
        lines = [f"{self.path} ({self.kind}): {self.checked} images checked, {len(self.bad)} bad, {len(self.problems)} other problems"]
        lines += [f"  bad: {b}" for b in self.bad[:_SHOWN]]
        if len(self.bad) > _SHOWN:
            lines.append(f"  ... and {len(self.bad) - _SHOWN} more bad images")
        lines += [f"  problem: {p}" for p in self.problems]
        lines.append("  OK" if self.ok else "  FAILED")
        return "\n".join(lines)


def _progress(items: Iterable[T], total: int, desc: str, enabled: bool) -> Iterator[T]:
    from tqdm import tqdm

    yield from tqdm(items, total=total, desc=desc, unit="img", disable=not enabled, file=sys.stderr, mininterval=0.5)


def _check_image(report: VerifyReport, buf: bytes, where: str, size: tuple[int, int] | None) -> None:
    report.checked += 1
    try:
        img = decode_image(buf, where)
    except DataFormatError as exc:
        report.bad.append(str(exc))
        return
    if size is not None and img.shape[:2] != tuple(size):
        report.bad.append(f"{where}: image is {img.shape[0]}x{img.shape[1]}, property says {size[0]}x{size[1]}")


def _verify_recordio(root: Path, report: VerifyReport, progress: bool) -> None:
    from fr_lightning.data.formats.recordio_set import RecordIOSet

    try:
        records = RecordIOSet(root)
        n = records.num_classes
    except DataFormatError as exc:  # the index does not fit the file, or the header record is bad
        report.problems.append(str(exc))
        return
    reader = records.reader
    # .idx against .rec: every listed offset must be a record the file scan finds.
    scanned: list[int] = []
    try:
        scanned.extend(reader.scan_offsets())
    except DataFormatError as exc:
        report.problems.append(f"scan of {records.rec_path} stopped after {len(scanned)} records: {exc}")
    listed = reader.offsets_of(reader.keys)
    if len(scanned) and not report.problems:
        stray = np.setdiff1d(listed, np.asarray(scanned, dtype=np.int64))
        if len(stray):
            report.problems.append(f"{records.idx_path}: {len(stray)} offsets are not record starts in {records.rec_path} (first {int(stray[0])})")
        unlisted = len(np.setdiff1d(np.asarray(scanned, dtype=np.int64), listed))
        if unlisted:
            report.problems.append(f"{records.rec_path}: {unlisted} records are not listed in {records.idx_path}")
    if records.identity_keys is not None and records._property_classes is not None:
        if len(records.identity_keys) != records._property_classes:
            report.problems.append(
                f"{records.property_path} says {records._property_classes} classes, the header record lists "
                f"{len(records.identity_keys)} identity records"
            )
    for j in _progress(range(len(records)), len(records), "verify", progress):
        try:
            buf, label = records.read(j)
        except DataFormatError as exc:
            report.checked += 1
            report.bad.append(str(exc))
            continue
        if not (np.isfinite(label) and float(label).is_integer() and 0 <= label < n):
            report.bad.append(f"{records.describe(j)} has label {label}, outside [0, {n}) (num_classes from {records.property_path})")
        _check_image(report, buf, records.describe(j), records.image_size)


def _verify_wds(root: Path, report: VerifyReport, progress: bool) -> None:
    from fr_lightning.data.formats.wds import INDEX_NAME, _size, parse_sample, raw_samples, read_shard_index

    try:
        index = read_shard_index(str(root))
    except DataFormatError as exc:
        report.problems.append(str(exc))
        return
    bar = _progress(iter(range(index.num_samples)), index.num_samples, "verify", progress)
    for k in range(len(index.files)):
        url = index.url(k)
        try:
            size = _size(url)
        except FileNotFoundError:
            report.problems.append(f"{url}: shard listed in {INDEX_NAME} is missing")
            continue
        if index.filesizes[k] is not None and size != index.filesizes[k]:
            report.problems.append(f"{url}: shard is {size} bytes, {INDEX_NAME} says {index.filesizes[k]}")
        count = 0
        try:
            for raw in raw_samples(url):
                next(bar, None)
                try:
                    sample = parse_sample(raw, count, url)
                except DataFormatError as exc:
                    report.checked += 1
                    report.bad.append(str(exc))
                    count += 1
                    continue
                count += 1
                where = f"{url}: sample {sample.key!r}"
                if not 0 <= sample.label < index.num_classes:
                    report.bad.append(f"{where} has label {sample.label}, outside [0, {index.num_classes}) (num_classes from {INDEX_NAME})")
                _check_image(report, sample.image, where, index.image_size)
        except DataFormatError as exc:
            report.problems.append(str(exc))
        if count != int(index.sizes[k]):
            report.problems.append(f"{url}: holds {count} samples, {INDEX_NAME} says {int(index.sizes[k])}")
    for _ in bar:  # close the bar
        pass


def verify(path: str | Path, progress: bool = True) -> VerifyReport:
    """Check a RecordIO folder, WebDataset shard folder, image folder or ``.bin`` file.

    Returns:
        The report; ``report.ok`` is False when anything is broken.
    """
    path = Path(path)
    if path.is_file() and path.suffix == ".bin":
        from fr_lightning.data.formats.binfile import load_bin

        report = VerifyReport(str(path), "bin")
        try:
            bins, _ = load_bin(path)
        except DataFormatError as exc:
            report.problems.append(str(exc))
            return report
        for i in _progress(range(len(bins)), len(bins), "verify", progress):
            _check_image(report, bins[i], f"{path}: image {i}", None)
        return report
    if (path / "train.rec").is_file():
        report = VerifyReport(str(path), "recordio")
        _verify_recordio(path, report, progress)
        return report
    if (path / "shards.json").is_file():
        report = VerifyReport(str(path), "wds")
        _verify_wds(path, report, progress)
        return report
    if path.is_dir():
        from fr_lightning.data.sources.folder import scan_folder

        report = VerifyReport(str(path), "folder")
        try:
            idx = scan_folder(path)
        except DataFormatError as exc:
            report.problems.append(str(exc))
            return report
        for p in _progress(idx.paths, len(idx.paths), "verify", progress):
            _check_image(report, p.read_bytes(), str(p), None)
        return report
    raise FileNotFoundError(f"{path}: not found (expected a RecordIO folder, a shard folder, an image folder or a .bin)")
