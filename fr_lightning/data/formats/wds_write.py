"""Writing WebDataset tar shards and their ``shards.json`` index (layout: :mod:`fr_lightning.data.formats.wds`)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO, Any

import numpy as np

from fr_lightning.data.formats.wds import INDEX_KIND, INDEX_NAME, image_ext
from fr_lightning.utils.atomic import temp_name

__all__ = ["WdsWriter"]


class WdsWriter:
    """Write samples (already-encoded images) into tar shards plus ``shards.json``.

    Shards are written through ``webdataset.TarWriter`` under temporary names and renamed, with
    ``shards.json`` last, only in :meth:`close`, once every sample is written: a crash, a refused
    sample or a full disk leaves no shard or index under a final name (a previous ``shards.json``
    in the folder is removed only just before the new shards are renamed in). Use as a context
    manager (an exception removes the temporary files), or call :meth:`close` to finish.

    Args:
        out_dir: Output folder (created; existing shards of the same names are overwritten).
        num_classes: Stored in the index (the data module links it into the head).
        image_size: ``(height, width)`` of the images, stored in the index.
        max_count: Samples per shard.
        max_bytes: A shard is also closed once its image bytes exceed this.
        prefix: Shard file name prefix (``shard-000000.tar``, ...).
    """

    def __init__(
        self,
        out_dir: str | Path,
        num_classes: int,
        image_size: tuple[int, int] | None = None,
        max_count: int = 10_000,
        max_bytes: int = 1 << 30,
        prefix: str = "shard",
    ) -> None:
        if "." in prefix or "/" in prefix:
            raise ValueError(f"shard prefix {prefix!r} must be a plain name without dots")
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.num_classes = int(num_classes)
        self.image_size = image_size
        self.max_count = int(max_count)
        self.max_bytes = int(max_bytes)
        self.prefix = prefix
        self.shards: list[dict[str, Any]] = []
        self.num_samples = 0
        self._fields: tuple[bool, bool] | None = None
        self._tar: Any = None
        self._file: IO[bytes] | None = None
        self._count = 0
        self._bytes = 0
        self._index: dict[str, Any] | None = None

    def _tmp(self, name: str) -> Path:
        return temp_name(self.out_dir / name)

    def _start(self) -> None:
        import webdataset

        name = f"{self.prefix}-{len(self.shards):06d}.tar"
        self._file = open(self._tmp(name), "wb")  # noqa: SIM115 - closed in _finish
        # Fixed integer mtime: converting the same data twice gives byte-identical shards, and
        # (unlike a float) needs no pax header per member.
        self._tar = webdataset.TarWriter(self._file, encoder=False, mtime=0)
        self._name, self._count, self._bytes = name, 0, 0

    def _finish(self) -> None:
        if self._tar is None:
            return
        self._tar.close()
        assert self._file is not None
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        size = self._tmp(self._name).stat().st_size
        self.shards.append({"url": self._name, "nsamples": self._count, "filesize": size})
        self._tar = self._file = None

    def add(self, image: bytes, label: int, landmarks: np.ndarray | None = None, group: int | None = None) -> None:
        """Append one sample; every sample must carry the same optional fields as the first."""
        if self._index is not None:
            raise ValueError(f"{self.out_dir}: WdsWriter is closed")
        fields = (landmarks is not None, group is not None)
        if self._fields is None:
            self._fields = fields
        elif fields != self._fields:
            raise ValueError(f"sample {self.num_samples}: landmarks/group given for some samples but not others")
        label = int(label)
        if not 0 <= label < self.num_classes:
            raise ValueError(f"sample {self.num_samples}: label {label} outside [0, {self.num_classes})")
        image = bytes(image)
        sample: dict[str, Any] = {"__key__": f"{self.num_samples:09d}", image_ext(image): image, "cls": b"%d" % label}
        meta: dict[str, Any] = {}
        if landmarks is not None:
            meta["landmarks"] = np.asarray(landmarks, np.float32).reshape(5, 2).tolist()
        if group is not None:
            meta["group"] = int(group)
        if meta:
            sample["json"] = json.dumps(meta).encode()
        if self._tar is None:
            self._start()
        self._tar.write(sample)
        self._count += 1
        self._bytes += len(image)
        self.num_samples += 1
        if self._count >= self.max_count or self._bytes >= self.max_bytes:
            self._finish()

    def close(self) -> dict[str, Any]:
        """Finish the last shard and write ``shards.json``; return the index (closing twice is a no-op)."""
        if self._index is not None:
            return self._index
        try:
            self._finish()
        except BaseException:
            self._discard()
            raise
        has_lm, has_group = self._fields or (False, False)
        index = {
            "__kind__": INDEX_KIND,
            "wids_version": 1,
            "name": self.out_dir.name,
            "shardlist": self.shards,
            "fr_lightning": {
                "num_samples": self.num_samples,
                "num_classes": self.num_classes,
                "image_size": None if self.image_size is None else list(self.image_size),
                "has_landmarks": has_lm,
                "has_group": has_group,
            },
        }
        try:
            text = json.dumps(index, indent=1) + "\n"
            with open(self._tmp(INDEX_NAME), "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            self._discard()
            raise
        # Every byte is on disk: drop the old index first (a kill from here on leaves shards with
        # no index, which readers refuse, never an index that lists a mix of old and new shards).
        (self.out_dir / INDEX_NAME).unlink(missing_ok=True)
        for shard in self.shards:
            os.replace(self._tmp(shard["url"]), self.out_dir / shard["url"])
        os.replace(self._tmp(INDEX_NAME), self.out_dir / INDEX_NAME)
        self._index = index
        return index

    def _discard(self) -> None:
        """Remove every temporary file of this writer (final names are untouched)."""
        if self._tar is not None:
            try:
                self._tar.close()
                assert self._file is not None
                self._file.close()
            except Exception:  # noqa: BLE001 - the disk that failed may fail the close too; the file goes anyway
                pass
            self.shards.append({"url": self._name})
            self._tar = self._file = None
        for shard in self.shards:
            self._tmp(shard["url"]).unlink(missing_ok=True)
        self._tmp(INDEX_NAME).unlink(missing_ok=True)
        self.shards = []

    def __enter__(self) -> WdsWriter:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.close()
        elif self._index is None:  # leave no half-written shard behind
            self._discard()
