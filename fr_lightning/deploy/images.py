"""Face images for ``fr embed`` / ``fr verify``: listing, 5-point alignment and normalisation.

IMAGES is a folder (every image file below it, sorted by relative path) or a list file (one path
per line, relative to the list file's folder or absolute; anything after the path on the line,
such as a label, is ignored when the whole line is not an existing file). Images are aligned
crops already (resized to the model's input size if their size differs), or a landmarks file
gives five points per image (``path x1 y1 ... x5 y5``, the format of ``fr data align``, path as
listed) and each image is aligned to the template at the model's input size.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    from fr_lightning.data.transforms import SizeCheck

__all__ = ["IMAGE_SUFFIXES", "list_images", "load_face", "normalize", "read_landmarks"]

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})


def list_images(images: str | Path) -> tuple[list[str], list[Path]]:
    """``(names as listed, resolved paths)`` of a folder of images or a list file.

    Raises:
        FileNotFoundError: ``images`` or a listed file does not exist.
        ValueError: no image found.
    """
    root = Path(images)
    if root.is_dir():
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        names = [p.relative_to(root).as_posix() for p in files]
    elif root.is_file():
        names, files = [], []
        for lineno, line in enumerate(root.read_text(encoding="utf-8").splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name = line
            path = Path(name) if Path(name).is_absolute() else root.parent / name
            if not path.is_file():
                first = line.split()[0]
                alt = Path(first) if Path(first).is_absolute() else root.parent / first
                if not alt.is_file():
                    raise FileNotFoundError(f"{root}, line {lineno}: image {path} does not exist")
                name, path = first, alt
            names.append(name)
            files.append(path)
    else:
        raise FileNotFoundError(f"{root} is neither a folder of images nor a list file")
    if not files:
        raise ValueError(f"{root}: no images found (suffixes {sorted(IMAGE_SUFFIXES)})")
    return names, files


def read_landmarks(path: str | Path) -> dict[str, np.ndarray]:
    """``{name: [5, 2] float64}`` from a ``name x1 y1 ... x5 y5`` text file (insightface point order)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"landmarks file {path} does not exist")
    out: dict[str, np.ndarray] = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.rsplit(maxsplit=10)
        try:
            if len(fields) != 11:
                raise ValueError
            points = np.array([float(v) for v in fields[1:]], dtype=np.float64).reshape(5, 2)
        except ValueError:
            raise ValueError(f"{path}, line {lineno}: expected 'path x1 y1 ... x5 y5', got {line[:80]!r}") from None
        if not np.isfinite(points).all():
            raise ValueError(f"{path}, line {lineno}: landmarks must be finite numbers")
        out[Path(fields[0]).as_posix()] = points
    if not out:
        raise ValueError(f"{path}: no landmarks in it")
    return out


def load_face(
    path: str | Path, size: int, landmarks: np.ndarray | None = None, check: SizeCheck | None = None
) -> tuple[np.ndarray, bool]:
    """RGB uint8 ``[size, size, 3]`` face crop, and whether it was resized.

    With ``landmarks`` the image is aligned (similarity to the 5-point template at ``size``);
    without, it is taken as an aligned crop and resized only when its size differs (``check``,
    the image set's :class:`~fr_lightning.data.transforms.SizeCheck`, warns once or refuses).
    """
    from fr_lightning.data import align_face

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"cannot read image {path}")
    resized = False
    if landmarks is not None:
        img, _ = align_face(img, landmarks, size)
    elif img.shape[:2] != (size, size):
        if check is not None:
            check(img.shape, str(path))
        shrink = img.shape[0] > size or img.shape[1] > size
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        resized = True
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB), resized


def normalize(rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB ``[B, S, S, 3]`` -> float32 ``[B, 3, S, S]`` as training saw it: ``x / 127.5 - 1``."""
    from fr_lightning.data import normalize_images

    return normalize_images(np.ascontiguousarray(rgb)).numpy()
