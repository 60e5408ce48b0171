"""Write insightface-layout RecordIO folders (``train.rec``, ``train.idx``, ``property``).

Samples are streamed (constant memory), so they must come **sorted by label** (non-decreasing):
each identity's images then form the contiguous key range its identity record points at.
Identity records are written for every class in ``[0, num_classes)``, including classes without
images (empty range). The header record's ``[A, B)`` is only known at the end; it has a fixed
length, so it is patched in place.

The three files are written under temporary names and renamed into place only once every sample
is written (:class:`~fr_lightning.utils.atomic.AtomicFiles`): a refused sample, a full disk or a
kill leaves no partial ``train.rec``/``train.idx``/``property``, and a previous good set in the
same folder stays as it was.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from fr_lightning.data.formats.images import encode_image
from fr_lightning.data.formats.recordio import _MAGIC_BYTES, RecordIOWriter, pack_header
from fr_lightning.data.formats.recordio_set import MAX_EXACT_LABEL
from fr_lightning.utils.atomic import AtomicFiles

__all__ = ["write_recordio", "write_recordio_encoded"]


def _write_layout(files: AtomicFiles, samples: Iterable[tuple[bytes, int]], num_classes: int | None) -> tuple[int, int]:
    """Write ``train.rec``/``train.idx`` in the insightface layout; return ``(images, num_classes)``."""
    rec_path = files.path("train.rec")
    starts: list[int] = []  # class c's images are keys starts[c]..starts[c+1]-1
    key, last = 1, -1
    with RecordIOWriter(rec_path, files.path("train.idx")) as writer:
        header_offset = writer.write(0, pack_header([0.0, 0.0]))
        for i, (buf, label) in enumerate(samples):
            label = operator.index(label)
            if label < last:
                raise ValueError(f"sample {i}: label {label} after label {last}; samples must be sorted by label")
            if label < 0 or label >= MAX_EXACT_LABEL or (num_classes is not None and label >= num_classes):
                top = MAX_EXACT_LABEL if num_classes is None else num_classes
                raise ValueError(f"sample {i}: label {label} outside [0, {top})")
            while len(starts) <= label:
                starts.append(key)
            writer.write(key, pack_header(float(label), id=key) + bytes(buf))
            last, key = label, key + 1
        if num_classes is None:
            num_classes = last + 1
        while len(starts) <= num_classes:
            starts.append(key)
        first_identity = key
        for c in range(num_classes):
            writer.write(first_identity + c, pack_header([starts[c], starts[c + 1]], id=first_identity + c))
    header = pack_header([float(first_identity), float(first_identity + num_classes)])
    assert _MAGIC_BYTES not in header  # positive floats never contain the magic word
    with open(rec_path, "r+b") as f:
        f.seek(header_offset + 8)
        f.write(header)
    return key - 1, num_classes


def _write_property(files: AtomicFiles, num_classes: int, image_size: tuple[int, int]) -> None:
    files.path("property").write_text(f"{num_classes},{image_size[0]},{image_size[1]}\n", encoding="ascii")


def write_recordio_encoded(
    root: str | Path,
    samples: Iterable[tuple[bytes, int]],
    num_classes: int | None,
    image_size: tuple[int, int],
) -> int:
    """Write already-encoded images (bytes kept as they are, never re-encoded).

    Args:
        root: Output folder (created; existing files are replaced at the end, never left half-written).
        samples: ``(encoded_image, label)`` pairs, labels non-decreasing.
        num_classes: Number of classes; None: the largest label + 1.
        image_size: ``(height, width)`` written to ``property``.

    Returns:
        The number of images written.
    """
    with AtomicFiles(root) as files:
        n, classes = _write_layout(files, samples, num_classes)
        _write_property(files, classes, image_size)
    return n


def write_recordio(
    root: str | Path,
    samples: Iterable[tuple[np.ndarray, int]],
    num_classes: int | None = None,
    img_fmt: str = ".jpg",
    quality: int = 95,
    image_size: tuple[int, int] | None = None,
) -> int:
    """Encode RGB uint8 images with OpenCV and write them in the insightface layout.

    Args:
        root: Output folder (created if needed; existing files are replaced at the end, never left
            half-written).
        samples: ``(rgb_uint8_image, label)`` pairs, labels non-decreasing.
        num_classes: Number of classes; defaults to the largest label + 1.
        img_fmt: ``'.jpg'`` or ``'.png'``.
        quality: JPEG quality.
        image_size: ``(height, width)`` for ``property``; defaults to the first image's.
            Every image must have this size.

    Returns:
        The number of images written.

    Raises:
        ValueError: Unsorted or negative labels, mixed image sizes, ``num_classes`` too small.
    """
    size: list[tuple[int, int]] = [] if image_size is None else [tuple(image_size)]  # type: ignore[list-item]

    def encoded() -> Iterator[tuple[bytes, int]]:
        for i, (img, label) in enumerate(samples):
            img = np.asarray(img)
            if not size:
                size.append((int(img.shape[0]), int(img.shape[1])))
            if tuple(img.shape[:2]) != size[0]:
                raise ValueError(
                    f"sample {i}: image is {img.shape[0]}x{img.shape[1]}, expected "
                    f"{size[0][0]}x{size[0][1]} (image_size / first image)"
                )
            yield encode_image(img, quality=quality, img_fmt=img_fmt), label

    with AtomicFiles(root) as files:
        n, classes = _write_layout(files, encoded(), num_classes)
        if not size:
            raise ValueError("no samples and no image_size: cannot write the property file")
        _write_property(files, classes, size[0])
    return n
