"""Real-data sources: insightface RecordIO, image folders / lists, streaming shards and ``.bin`` pair sets.

Every training dataset here yields the same sample dicts as the synthetic one
(``images`` float ``[3, S, S]`` normalised, ``labels`` int, optional ``landmarks`` ``[5, 2]``
and ``group`` from side files, ``index``), resizes images whose size differs from the data
module's ``image_size`` and applies an :class:`~fr_lightning.data.transforms.Augment`.

Side files give methods such as PoseFace (landmarks) and GABN (group) what real datasets do
not carry in their records. Two forms are accepted for each:

* ``.npy``: one row per training image in dataset order (RecordIO: ascending image keys, as
  ``fr data synth`` writes them; folders: the scan order, sub-folders and files sorted by name);
  landmarks ``[N, 5, 2]`` or ``[N, 10]`` float, group ``[N]`` int;
* text: one line per image, ``key x1 y1 ... x5 y5`` or ``key group``, where the key is the
  RecordIO record key or the image path relative to the folder root. Lines for images not in
  the dataset are ignored; an image without a line is an error.
"""

from __future__ import annotations

import logging
import operator
import os
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from torch.utils.data import Dataset

from fr_lightning.data.binfile import load_bin
from fr_lightning.data.errors import DataFormatError
from fr_lightning.data.pairs import PairSet
from fr_lightning.data.recordio import RecordIODataset, decode_image, unpack_header
from fr_lightning.data.sources import TrainSource, ValSource
from fr_lightning.data.streaming import ShardDataset, read_shard_index
from fr_lightning.data.transforms import Augment, normalize_images, resize_face

__all__ = [
    "IMAGE_EXTENSIONS",
    "load_side_file",
    "FaceSamples",
    "RecordIOFaces",
    "FolderIndex",
    "scan_folder",
    "FolderFaces",
    "RecordIOSource",
    "FolderSource",
    "StreamingSource",
    "BinPairs",
]

log = logging.getLogger(__name__)

#: File extensions a folder source picks up (case-insensitive); OpenCV decodes all of them.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


# --------------------------------------------------------------------------- side files


def load_side_file(
    path: str | Path, keys: Sequence[Any] | np.ndarray, kind: Literal["landmarks", "group"], what: str
) -> np.ndarray:
    """Read a landmarks or group side file and return one row per key (dataset order).

    Args:
        path: ``.npy`` (rows in dataset order) or text (``key value...`` lines).
        keys: The dataset's image keys (record keys or relative paths), in dataset order.
        kind: ``landmarks`` (returns float32 ``[N, 5, 2]``) or ``group`` (returns int64 ``[N]``).
        what: Names the dataset in error messages.

    Raises:
        FileNotFoundError: The file does not exist.
        DataFormatError: Wrong shape, a malformed line, or an image without a value (the message
            names the file and the line or key).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{kind} side file not found: {path}")
    n = len(keys)
    width = 10 if kind == "landmarks" else 1
    if path.suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except ValueError as exc:
            raise DataFormatError(f"{path}: not a plain numeric .npy array: {exc}") from None
        ok = arr.shape[:1] == (n,) and (
            (kind == "landmarks" and arr.shape[1:] in ((5, 2), (10,))) or (kind == "group" and arr.ndim == 1)
        )
        if not ok:
            want = f"({n}, 5, 2)" if kind == "landmarks" else f"({n},)"
            raise DataFormatError(
                f"{path}: {kind} array has shape {arr.shape}, expected {want}: one row per image of {what}, "
                "in dataset order"
            )
        values = arr.reshape(n, width)
    else:
        table: dict[str, list[str]] = {}
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                fields = line.rsplit(maxsplit=width)
                if len(fields) != width + 1:
                    raise DataFormatError(
                        f"{path}, line {lineno}: expected 'key' and {width} value(s), got {line[:80]!r}"
                    )
                table[fields[0]] = fields[1:]
        rows = []
        for key in keys:
            k = str(key)
            if k not in table:
                missing = sum(str(x) not in table for x in keys)
                raise DataFormatError(f"{path}: no {kind} for image {k!r} of {what} ({missing} of {n} images missing)")
            rows.append(table[k])
        try:
            values = np.array(rows, dtype=np.float64).reshape(n, width)
        except ValueError as exc:
            raise DataFormatError(f"{path}: non-numeric {kind} value: {exc}") from None
    if not np.isfinite(values).all():
        raise DataFormatError(f"{path}: {kind} holds NaN or infinite values")
    if kind == "group":
        if (values != np.round(values)).any() or (values < 0).any():
            raise DataFormatError(f"{path}: group values must be non-negative integers")
        return values.reshape(n).astype(np.int64)
    return values.reshape(n, 5, 2).astype(np.float32)


# --------------------------------------------------------------------------- datasets


class FaceSamples(Dataset):
    """Base of the map-style real-image training sets: decoded records -> sample dicts.

    Subclasses implement :meth:`read` (raise :class:`DataFormatError` for an unreadable sample)
    and :meth:`describe`. Labels are checked against ``num_classes`` on every read; a bad label
    is an error even with ``skip_corrupt`` (it means the data or ``num_classes`` is wrong).

    Args:
        num_classes: Valid labels are ``[0, num_classes)``.
        image_size: Output side in px (other sizes are resized, landmarks follow).
        augment: Augmentation applied to every sample.
        landmarks: Optional ``[N, 5, 2]`` landmarks in source-image pixels.
        groups: Optional ``[N]`` group ids.
        skip_corrupt: Skip unreadable samples (logged, counted in ``skipped``) instead of raising.
    """

    def __init__(
        self,
        num_classes: int,
        image_size: int,
        augment: Augment,
        landmarks: np.ndarray | None = None,
        groups: np.ndarray | None = None,
        skip_corrupt: bool = False,
    ) -> None:
        self.num_classes = num_classes
        self.image_size = image_size
        self.augment = augment
        self.landmarks = landmarks
        self.groups = groups
        self.skip_corrupt = skip_corrupt
        self.skipped = 0

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def read(self, index: int) -> tuple[np.ndarray, float]:
        """RGB uint8 image and raw label of sample ``index``."""

    @abstractmethod
    def describe(self, index: int) -> str:
        """Where sample ``index`` lives (file and key), for error messages."""

    def check_label(self, label: float, index: int) -> int:
        """Return ``label`` as int or raise a DataFormatError naming the record."""
        n = self.num_classes
        if not (np.isfinite(label) and float(label).is_integer() and 0 <= label < n):
            raise DataFormatError(f"{self.describe(index)} has label {label}, outside [0, {n}) (num_classes={n})")
        return int(label)

    def read_checked(self, index: int) -> tuple[int, np.ndarray, int]:
        """``(index actually used, image, label)``, skipping unreadable samples when configured."""
        n = len(self)
        for step in range(n if self.skip_corrupt else 1):
            j = (index + step) % n
            try:
                image, raw = self.read(j)
            except DataFormatError as exc:
                if not self.skip_corrupt:
                    raise
                self.skipped += 1
                log.warning("skipping unreadable sample: %s", exc)
                continue
            return j, image, self.check_label(raw, j)
        raise DataFormatError(f"{self.describe(index)}: no readable sample (all {n} failed)")

    def __getitems__(self, indices: list[int]) -> list[dict[str, Any]]:
        n = len(self)
        images, rows = [], []
        for index in indices:
            index = operator.index(index)
            if not -n <= index < n:
                raise IndexError(f"index {index} out of range for {n} samples")
            j, image, label = self.read_checked(index % n)
            lm = None if self.landmarks is None else self.landmarks[j]
            image, lm = resize_face(image, lm, self.image_size)
            aug = self.augment(image, lm)
            images.append(aug.image)
            rows.append((j, label, aug.landmarks))
        tensors = normalize_images(np.stack(images))
        out = []
        for k, (j, label, lm) in enumerate(rows):
            sample: dict[str, Any] = {"images": tensors[k], "labels": label}
            if lm is not None:
                sample["landmarks"] = np.asarray(lm, np.float32)
            if self.groups is not None:
                sample["group"] = int(self.groups[j])
            sample["index"] = j
            out.append(sample)
        return out

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.__getitems__([index])[0]


class RecordIOFaces(FaceSamples):
    """Training samples from a :class:`~fr_lightning.data.recordio.RecordIODataset` (``train.rec``/``.idx``).

    Args:
        records: The RecordIO dataset (supplies keys, ``num_classes`` and the reader).
        image_size: Output side in px.
        augment: Augmentation.
        landmarks: Optional ``[N, 5, 2]`` landmarks (``records.keys`` order).
        groups: Optional ``[N]`` groups.
        skip_corrupt: Skip unreadable records instead of raising.
    """

    def __init__(
        self,
        records: RecordIODataset,
        image_size: int,
        augment: Augment,
        landmarks: np.ndarray | None = None,
        groups: np.ndarray | None = None,
        skip_corrupt: bool = False,
    ) -> None:
        super().__init__(records.num_classes, image_size, augment, landmarks, groups, skip_corrupt)
        self.records = records
        self.keys = records.keys

    def __len__(self) -> int:
        return len(self.keys)

    def describe(self, index: int) -> str:
        return f"{self.records.rec_path}: record for key {int(self.keys[index])}"

    def read(self, index: int) -> tuple[np.ndarray, float]:
        where = self.describe(index)
        head = unpack_header(self.records.reader.read(int(self.keys[index])), where)
        label = head.label if head.flag == 0 else float(head.label[0])  # type: ignore[index]
        return decode_image(head.rest, where), float(label)


@dataclass(frozen=True)
class FolderIndex:
    """Images of a folder dataset: paths (absolute), their keys (relative paths), labels, class names."""

    root: Path
    paths: tuple[Path, ...]
    keys: tuple[str, ...]
    labels: np.ndarray
    num_classes: int
    classes: tuple[str, ...] | None


def scan_folder(root: str | Path, list_file: str | Path | None = None, num_classes: int | None = None) -> FolderIndex:
    """Index a face folder: one sub-folder per identity (label = rank of its sorted name), or a list file.

    Args:
        root: Dataset root.
        list_file: Optional text file of ``path label`` lines (paths relative to ``root`` unless
            absolute); replaces the sub-folder scan.
        num_classes: Number of classes; default: sub-folder count, or max label + 1 for a list.

    Raises:
        FileNotFoundError: ``root`` or ``list_file`` does not exist.
        DataFormatError: No identities or images, an identity folder without images, a malformed
            list line, or a label outside ``[0, num_classes)`` (messages name the path / line).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root}")
    paths: list[Path] = []
    keys: list[str] = []
    labels: list[int] = []
    classes: tuple[str, ...] | None = None
    if list_file is not None:
        list_path = Path(list_file)
        if not list_path.is_file():
            raise FileNotFoundError(f"image list not found: {list_path}")
        with open(list_path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                fields = line.rsplit(maxsplit=1)
                try:
                    if len(fields) != 2:
                        raise ValueError
                    label = int(fields[1])
                    if label < 0:
                        raise ValueError
                except ValueError:
                    raise DataFormatError(
                        f"{list_path}, line {lineno}: expected 'path label' with a label >= 0, got {line[:80]!r}"
                    ) from None
                rel = fields[0]
                p = Path(rel)
                paths.append(p if p.is_absolute() else root / p)
                keys.append(rel)
                labels.append(label)
        if not paths:
            raise DataFormatError(f"{list_path}: the image list is empty")
        where = str(list_path)
    else:
        with os.scandir(root) as it:
            dirs = sorted(e.name for e in it if e.is_dir() and not e.name.startswith("."))
        if not dirs:
            raise DataFormatError(f"{root}: no identity sub-folders (expected one sub-folder of images per identity)")
        for label, name in enumerate(dirs):
            with os.scandir(root / name) as it:
                files = sorted(e.name for e in it if e.is_file() and e.name.lower().endswith(IMAGE_EXTENSIONS))
            if not files:
                raise DataFormatError(f"{root / name}: identity folder holds no images ({', '.join(IMAGE_EXTENSIONS)})")
            for fname in files:
                paths.append(root / name / fname)
                keys.append(f"{name}/{fname}")
                labels.append(label)
        classes = tuple(dirs)
        where = str(root)
    arr = np.asarray(labels, dtype=np.int64)
    n = int(arr.max()) + 1 if num_classes is None else int(num_classes)
    bad = arr >= n
    if bad.any():
        i = int(np.argmax(bad))
        raise DataFormatError(f"{where}: image {keys[i]!r} has label {int(arr[i])}, outside [0, {n}) (num_classes={n})")
    return FolderIndex(root, tuple(paths), tuple(keys), arr, n, classes)


class FolderFaces(FaceSamples):
    """Training samples read from image files (decoded with OpenCV, converted to RGB).

    Args:
        index: The folder index from :func:`scan_folder`.
        image_size: Output side in px.
        augment: Augmentation.
        landmarks: Optional ``[N, 5, 2]`` landmarks.
        groups: Optional ``[N]`` groups.
        skip_corrupt: Skip unreadable files instead of raising.
    """

    def __init__(
        self,
        index: FolderIndex,
        image_size: int,
        augment: Augment,
        landmarks: np.ndarray | None = None,
        groups: np.ndarray | None = None,
        skip_corrupt: bool = False,
    ) -> None:
        super().__init__(index.num_classes, image_size, augment, landmarks, groups, skip_corrupt)
        self.index = index

    def __len__(self) -> int:
        return len(self.index.paths)

    def describe(self, index: int) -> str:
        return str(self.index.paths[index])

    def read(self, index: int) -> tuple[np.ndarray, float]:
        path = self.index.paths[index]
        try:
            buf = path.read_bytes()
        except OSError as exc:
            raise DataFormatError(f"{path}: cannot read image: {exc.strerror or exc}") from None
        return decode_image(buf, str(path)), float(self.index.labels[index])


# --------------------------------------------------------------------------- sources


def _resolve(root: Path, name: str | None) -> Path | None:
    if name is None:
        return None
    p = Path(name)
    if p.is_absolute():
        return p
    # Relative side files live next to the data; fall back to the working directory.
    return p if not (root / p).exists() and p.exists() else root / p


class RecordIOSource(TrainSource):
    """Insightface RecordIO training set (``train.rec``, ``train.idx``, ``property``), read without mxnet.

    ``num_classes`` comes from ``property`` (else the identity records, else max label + 1).

    Args:
        root: Folder holding ``train.rec``, ``train.idx`` and ``property``.
        skip_corrupt: Skip unreadable records (logged and counted) instead of stopping.
        landmarks: Optional landmarks side file (``.npy`` or text ``key x1 y1 ... x5 y5``; a
            relative path is looked up in ``root``); enables PoseFace-style methods.
        group: Optional group side file (``.npy`` or text ``key group``), for GABN / fairness.
        augment: Training augmentation (default: horizontal flip as the data module's ``hflip``).
    """

    def __init__(
        self,
        root: str = "data/synth",
        skip_corrupt: bool = False,
        landmarks: str | None = None,
        group: str | None = None,
        augment: Augment | None = None,
    ) -> None:
        self.root = Path(root)
        self.skip_corrupt = skip_corrupt
        self.landmarks = landmarks
        self.group = group
        self.augment = augment
        self._records: RecordIODataset | None = None

    @property
    def records(self) -> RecordIODataset:
        """The underlying RecordIO dataset (opened on first use)."""
        if self._records is None:
            if not self.root.is_dir():
                raise FileNotFoundError(f"RecordIO folder not found: {self.root} (write one with `fr data synth`)")
            self._records = RecordIODataset(self.root)
        return self._records

    @property
    def num_classes(self) -> int:
        return self.records.num_classes

    def dataset(self, image_size: int, hflip: bool) -> Dataset:
        rec = self.records
        what = str(rec.rec_path)
        lm_path, grp_path = _resolve(self.root, self.landmarks), _resolve(self.root, self.group)
        lm = None if lm_path is None else load_side_file(lm_path, rec.keys, "landmarks", what)
        grp = None if grp_path is None else load_side_file(grp_path, rec.keys, "group", what)
        augment = self.augment if self.augment is not None else Augment(hflip=hflip)
        return RecordIOFaces(rec, image_size, augment, lm, grp, self.skip_corrupt)


class FolderSource(TrainSource):
    """Aligned face crops on disk: one sub-folder per identity, or a text list of ``path label`` lines.

    Args:
        root: Dataset root (sub-folders sorted by name give labels 0, 1, ...).
        list_file: Optional ``path label`` list (paths relative to ``root``) instead of sub-folders.
        num_classes: Number of classes (default: folder count, or max label + 1 of the list).
        skip_corrupt: Skip unreadable images (logged and counted) instead of stopping.
        landmarks: Optional landmarks side file (``.npy`` in scan order, or text
            ``relative/path.jpg x1 y1 ... x5 y5``).
        group: Optional group side file (``.npy`` or text ``relative/path.jpg group``).
        augment: Training augmentation (default: horizontal flip as the data module's ``hflip``).
    """

    def __init__(
        self,
        root: str = "data/faces",
        list_file: str | None = None,
        num_classes: int | None = None,
        skip_corrupt: bool = False,
        landmarks: str | None = None,
        group: str | None = None,
        augment: Augment | None = None,
    ) -> None:
        self.root = Path(root)
        self.list_file = list_file
        self._num_classes = num_classes
        self.skip_corrupt = skip_corrupt
        self.landmarks = landmarks
        self.group = group
        self.augment = augment
        self._index: FolderIndex | None = None

    @property
    def index(self) -> FolderIndex:
        """The scanned folder (cached)."""
        if self._index is None:
            self._index = scan_folder(self.root, _resolve(self.root, self.list_file), self._num_classes)
        return self._index

    @property
    def num_classes(self) -> int:
        return self.index.num_classes

    def dataset(self, image_size: int, hflip: bool) -> Dataset:
        idx = self.index
        lm_path, grp_path = _resolve(self.root, self.landmarks), _resolve(self.root, self.group)
        lm = None if lm_path is None else load_side_file(lm_path, idx.keys, "landmarks", str(self.root))
        grp = None if grp_path is None else load_side_file(grp_path, idx.keys, "group", str(self.root))
        augment = self.augment if self.augment is not None else Augment(hflip=hflip)
        return FolderFaces(idx, image_size, augment, lm, grp, self.skip_corrupt)


class StreamingSource(TrainSource):
    """Sharded training set (see :mod:`fr_lightning.data.streaming`), streamed chunk by chunk.

    Each DDP rank and DataLoader worker reads only its own chunks; ``num_classes`` comes from
    the shard index. Write shards with ``fr data convert SRC OUT --to shards``.

    Args:
        uri: Shard folder: local path or an fsspec URI (``s3://bucket/webface42m``, needs the
            fsspec backend for that store, e.g. ``s3fs``).
        seed: Seeds the per-epoch chunk and sample order.
        shuffle: Shuffle chunks and samples every epoch.
        augment: Training augmentation (default: horizontal flip as the data module's ``hflip``).
    """

    def __init__(self, uri: str = "data/shards", seed: int = 0, shuffle: bool = True, augment: Augment | None = None) -> None:
        self.uri = str(uri)
        self.seed = seed
        self.shuffle = shuffle
        self.augment = augment
        self._num_classes: int | None = None

    @property
    def num_classes(self) -> int:
        if self._num_classes is None:
            self._num_classes = read_shard_index(self.uri).num_classes
        return self._num_classes

    def dataset(self, image_size: int, hflip: bool) -> Dataset:
        augment = self.augment if self.augment is not None else Augment(hflip=hflip)
        return ShardDataset(self.uri, image_size, augment, seed=self.seed, shuffle=self.shuffle)


class BinPairs(ValSource):
    """An insightface verification set (``lfw.bin``, ``cfp_fp.bin``, ``agedb_30.bin``, ...).

    The file is loaded with the restricted unpickler; images stay encoded in memory and are
    decoded when a validation batch asks for them (about 30 MB per 6,000 pairs instead of
    450 MB decoded). Images whose size differs from ``image_size`` are resized (area
    interpolation when shrinking, bilinear when enlarging), so a 112 px file also validates a
    56 px CPU model.

    Args:
        path: The ``.bin`` file.
        name: Metric prefix (``val/<name>/acc``); default: the file stem (``lfw``, ``cfp_fp``).
    """

    def __init__(self, path: str = "data/lfw.bin", name: str | None = None) -> None:
        self.path = Path(path)
        self.name = name if name is not None else self.path.stem

    def build(self, image_size: int) -> PairSet:
        if not self.path.is_file():
            raise FileNotFoundError(f"verification set not found: {self.path}")
        bins, issame = load_bin(self.path)
        where = str(self.path)

        def load(indices: np.ndarray) -> np.ndarray:
            out = np.empty((len(indices), image_size, image_size, 3), dtype=np.uint8)
            for k, i in enumerate(np.asarray(indices).tolist()):
                img = decode_image(bins[i], f"{where}: image {i}")
                out[k] = resize_face(img, None, image_size)[0]
            return out

        return PairSet(name=self.name, issame=issame, load=load)
