"""Batched, resumable feature extraction of aligned faces.

Features are written in chunks (``chunk_00000.npy`` ... of ``[n, 2, D]`` float32: image and
mirrored image) next to a ``manifest.json`` listing the finished chunks. Each chunk is written
to a temporary file and renamed, then the manifest is rewritten the same way, so an interrupted
run (Ctrl-C, a killed job) loses at most the chunk in progress and the next run continues.
A cache belongs to one (checkpoint, image list, crop size): its folder is named by a hash of them.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from fr_lightning.data import DataFormatError, align_face

__all__ = ["AlignedImages", "FeatureCache", "extract_features", "read_rgb"]

#: A ``[B, S, S, 3]`` uint8 batch -> ``[B, 2, D]`` float32 features (image, mirrored image).
EmbedFn = Callable[[np.ndarray], np.ndarray]


def read_rgb(path: Path, where: str) -> np.ndarray:
    """Decode an image file to RGB uint8; ``where`` names the list entry in the error."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise DataFormatError(f"{where}: cannot read image {path}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


class AlignedImages(Dataset):
    """Images aligned with their 5 landmarks to the (scaled) 112-px template, or resized when no landmarks.

    Args:
        paths: image files.
        landmarks: ``[N, 5, 2]`` pixel landmarks, or ``None`` to resize whole images (TinyFace).
        size: output side in px.
        where: names the list file in errors (``"<file>, line"`` is followed by ``i + 1``).
    """

    def __init__(self, paths: Sequence[Path], landmarks: np.ndarray | None, size: int, where: str = "image") -> None:
        self.paths = list(paths)
        self.landmarks = landmarks
        self.size = int(size)
        self.where = where

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> np.ndarray:
        img = read_rgb(self.paths[i], f"{self.where} {i + 1}")
        if self.landmarks is None:
            return cv2.resize(img, (self.size, self.size), interpolation=cv2.INTER_CUBIC)
        return align_face(img, self.landmarks[i], self.size)[0]


def _fingerprint(parts: dict[str, object]) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def _write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


class FeatureCache:
    """Chunked ``.npy`` features of one image list under ``root/<key>/``.

    Args:
        root: cache folder (one sub-folder per key).
        key: identifies checkpoint, image list and crop size (see :meth:`key_for`).
        num_images: images in the list.
        chunk_size: images per chunk file.
    """

    def __init__(self, root: Path, key: str, num_images: int, chunk_size: int = 8192) -> None:
        self.dir = Path(root) / key
        self.num_images = int(num_images)
        self.chunk_size = int(chunk_size)
        self.manifest_path = self.dir / "manifest.json"
        self.done: set[int] = set()
        if self.manifest_path.is_file():
            try:
                manifest = json.loads(self.manifest_path.read_text())
                same = manifest["num_images"] == self.num_images and manifest["chunk_size"] == self.chunk_size
                done = {int(c) for c in manifest["done"]}
            except (ValueError, KeyError, TypeError) as err:
                raise DataFormatError(f"{self.manifest_path}: unreadable feature-cache manifest ({err}); delete the folder to start over") from None
            if not same:
                raise DataFormatError(f"{self.manifest_path}: made with another image count or chunk size; delete the folder to start over")
            self.done = {c for c in done if self.chunk_file(c).is_file()}

    @staticmethod
    def key_for(ckpt: Path, image_list: bytes, image_size: int) -> str:
        """Cache key of a checkpoint (path, size, mtime), an image list (its bytes, hashed) and crop size."""
        st = ckpt.stat()
        digest = hashlib.sha1(image_list).hexdigest()
        return _fingerprint({"ckpt": str(ckpt.resolve()), "size": st.st_size, "mtime": st.st_mtime_ns, "list": digest, "image_size": image_size})

    @property
    def num_chunks(self) -> int:
        return -(-self.num_images // self.chunk_size)

    def chunk_file(self, c: int) -> Path:
        return self.dir / f"chunk_{c:05d}.npy"

    def chunk_range(self, c: int) -> range:
        return range(c * self.chunk_size, min(self.num_images, (c + 1) * self.chunk_size))

    def save_chunk(self, c: int, feats: np.ndarray) -> None:
        """Write chunk ``c`` and record it in the manifest (both atomically)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.chunk_file(c).with_name(self.chunk_file(c).name + ".tmp"), "wb") as f:
            np.save(f, np.ascontiguousarray(feats, np.float32))
        os.replace(self.chunk_file(c).with_name(self.chunk_file(c).name + ".tmp"), self.chunk_file(c))
        self.done.add(c)
        manifest = {"num_images": self.num_images, "chunk_size": self.chunk_size, "done": sorted(self.done)}
        _write_atomic(self.manifest_path, lambda p: p.write_text(json.dumps(manifest)))

    def load(self) -> np.ndarray:
        """All features ``[N, 2, D]`` (every chunk must be done)."""
        missing = [c for c in range(self.num_chunks) if c not in self.done]
        if missing:
            raise RuntimeError(f"{self.dir}: chunks {missing[:5]} are not extracted yet")
        return np.concatenate([np.load(self.chunk_file(c)) for c in range(self.num_chunks)])


def extract_features(
    dataset: Dataset,
    embed: EmbedFn,
    cache: FeatureCache | None = None,
    batch_size: int = 128,
    num_workers: int = 0,
    progress: bool = True,
    desc: str = "features",
) -> np.ndarray:
    """Embed every item of ``dataset`` (uint8 crops) in batches, chunk by chunk through ``cache``.

    Returns:
        ``[N, 2, D]`` float32 features (image, mirrored image).
    """
    from tqdm.auto import tqdm

    n = len(dataset)
    cache = cache if cache is not None else _MemoryCache(n)
    todo = [c for c in range(cache.num_chunks) if c not in cache.done]
    done_images = n - sum(len(cache.chunk_range(c)) for c in todo)
    bar = tqdm(total=n, initial=done_images, desc=desc, unit="img", disable=not progress, dynamic_ncols=True)
    try:
        for c in todo:
            subset = torch.utils.data.Subset(dataset, list(cache.chunk_range(c)))
            loader = DataLoader(subset, batch_size=batch_size, num_workers=num_workers, collate_fn=np.stack)
            parts = []
            for batch in loader:
                parts.append(np.asarray(embed(batch), np.float32))
                bar.update(len(batch))
            cache.save_chunk(c, np.concatenate(parts))
    finally:
        bar.close()
    return cache.load()


class _MemoryCache(FeatureCache):
    """A FeatureCache that keeps chunks in memory (no resume)."""

    def __init__(self, num_images: int, chunk_size: int = 8192) -> None:
        self.num_images, self.chunk_size = int(num_images), int(chunk_size)
        self.done = set()
        self._chunks: dict[int, np.ndarray] = {}

    def save_chunk(self, c: int, feats: np.ndarray) -> None:
        self._chunks[c] = np.asarray(feats, np.float32)
        self.done.add(c)

    def load(self) -> np.ndarray:
        return np.concatenate([self._chunks[c] for c in range(self.num_chunks)])
