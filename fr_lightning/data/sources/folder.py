"""Aligned face crops on disk as a training source: one sub-folder per identity, or a ``path label`` list."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fr_lightning.data.errors import DataFormatError
from fr_lightning.data.sources.base import MapSource
from fr_lightning.data.sources.samples import FaceSamples, SkipCounter
from fr_lightning.data.sources.side_files import resolve_path, side_data
from fr_lightning.data.transforms import Augment

__all__ = ["IMAGE_EXTENSIONS", "FolderIndex", "scan_folder", "FolderFaces", "FolderSource"]

#: File extensions a folder source picks up (case-insensitive); OpenCV decodes all of them.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


@dataclass(frozen=True)
class FolderIndex:
    """Images of a folder dataset: paths (absolute), their keys (relative paths), labels, class names."""

    root: Path
    paths: tuple[Path, ...]
    keys: tuple[str, ...]
    labels: np.ndarray
    num_classes: int
    classes: tuple[str, ...] | None

    def __len__(self) -> int:
        return len(self.paths)

    def describe(self, position: int) -> str:
        """The image file at ``position`` (for error messages)."""
        return str(self.paths[position])

    def read(self, position: int) -> tuple[bytes, float]:
        """Encoded bytes and label of the image at ``position``; an unreadable file is a DataFormatError."""
        path = self.paths[position]
        try:
            return path.read_bytes(), float(self.labels[position])
        except OSError as exc:
            raise DataFormatError(f"{path}: cannot read image: {exc.strerror or exc}") from None


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
            raise DataFormatError(
                f"{root}: no identity sub-folders, so there is nothing to train on. Put the aligned face crops in "
                f"one sub-folder per identity ({root}/<identity>/<image>.jpg), or give the folder that holds those sub-folders"
            )
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
    """Training samples read from image files (a :class:`FaceSamples` over a :class:`FolderIndex`).

    Args:
        index: The folder index from :func:`scan_folder`.
        image_size: Output side in px.
        augment: Augmentation.
        landmarks: Optional ``[N, 5, 2]`` landmarks.
        groups: Optional ``[N]`` groups.
        skip_corrupt: Skip unreadable files instead of raising.
        skip_counter: Where skipped files are counted (default: a counter of its own).
    """

    def __init__(
        self,
        index: FolderIndex,
        image_size: int,
        augment: Augment,
        landmarks: np.ndarray | None = None,
        groups: np.ndarray | None = None,
        skip_corrupt: bool = False,
        skip_counter: SkipCounter | None = None,
    ) -> None:
        super().__init__(index, index.num_classes, image_size, augment, landmarks, groups, skip_corrupt, skip_counter)
        self.index = index


class FolderSource(MapSource):
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
        self.skip_counter = SkipCounter() if skip_corrupt else None

    @property
    def index(self) -> FolderIndex:
        """The scanned folder (cached)."""
        if self._index is None:
            index = scan_folder(self.root, resolve_path(self.root, self.list_file), self._num_classes)
            present = np.unique(index.labels)
            if len(present) < 2:
                who = index.classes[int(present[0])] if index.classes and len(present) else f"label {present.tolist()}"
                raise DataFormatError(
                    f"{index.root}: only one identity ({who}, {len(index)} images); training a recognition model "
                    "needs at least two identities, one sub-folder (or list label) each. Add sub-folders of other "
                    "people's faces, or point data.init_args.train.init_args.root at the folder that holds all of them"
                )
            self._index = index
        return self._index

    @property
    def num_classes(self) -> int:
        return self.index.num_classes

    def dataset(self, image_size: int, hflip: bool) -> FolderFaces:
        idx = self.index
        lm, grp = side_data(self.root, self.landmarks, self.group, idx.keys, str(self.root))
        augment = self.augment if self.augment is not None else Augment(hflip=hflip)
        return FolderFaces(idx, image_size, augment, lm, grp, self.skip_corrupt, self.skip_counter)
