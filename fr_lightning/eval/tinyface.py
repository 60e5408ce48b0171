"""TinyFace-style low-resolution identification: natural low-res probes vs a gallery plus distractors.

Layout (TinyFace's ``Testing_Set`` folder):

* ``Probe/<id>_<k>.<ext>``: low-resolution probe faces (about 20 px), identity = the integer
  before the first ``_`` of the file name;
* ``Gallery_Match/<id>_<k>.<ext>``: gallery faces of the probe identities (same naming);
* ``Gallery_Distractor/**``: faces of other people (any names, sub-folders allowed).

Every image is resized (bicubic) to the model's input size without alignment, embedded with its
mirror image (flip sum) and L2-normalised. The gallery is Gallery_Match plus Gallery_Distractor,
and ``rank-k`` is the fraction of probes with an image of their identity among the k most similar
gallery images (fewer than k other-identity images score strictly higher than the best mate).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fr_lightning.data import DataFormatError

__all__ = ["TINYFACE_RANKS", "TinyFaceSet", "load_tinyface", "rank_accuracy"]

#: Ranks reported on TinyFace.
TINYFACE_RANKS: tuple[int, ...] = (1, 5, 20)
_EXTS = {".jpg", ".jpeg", ".png", ".bmp"}


@dataclass
class TinyFaceSet:
    """Image lists of a TinyFace-layout folder (paths sorted; distractor identities are -1)."""

    root: Path
    probes: list[Path]
    probe_ids: np.ndarray
    gallery: list[Path]
    gallery_ids: np.ndarray

    @property
    def paths(self) -> list[Path]:
        """Probes then gallery (match + distractors): the extraction order."""
        return self.probes + self.gallery


def _images(folder: Path, recursive: bool) -> list[Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: folder not found (expected TinyFace's Testing_Set layout: Probe/, Gallery_Match/, Gallery_Distractor/)")
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if p.is_file() and p.suffix.lower() in _EXTS)


def _identity(path: Path) -> int:
    head = path.name.split("_", 1)[0]
    if "_" not in path.name or not head.isdigit():
        raise DataFormatError(f"{path}: expected a file name '<identity>_<n>.<ext>' with an integer identity")
    return int(head)


def load_tinyface(root: str | Path) -> TinyFaceSet:
    """Read a TinyFace-layout folder (``Probe``, ``Gallery_Match``, ``Gallery_Distractor``).

    Raises:
        FileNotFoundError: a folder is missing.
        DataFormatError: a badly named file, an empty folder, or a probe identity without a gallery match.
    """
    root = Path(root)
    probes = _images(root / "Probe", False)
    match = _images(root / "Gallery_Match", False)
    distractors = _images(root / "Gallery_Distractor", True)
    for name, files in (("Probe", probes), ("Gallery_Match", match)):
        if not files:
            raise DataFormatError(f"{root / name}: no images")
    probe_ids = np.array([_identity(p) for p in probes], np.int64)
    match_ids = np.array([_identity(p) for p in match], np.int64)
    lonely = np.flatnonzero(~np.isin(probe_ids, match_ids))
    if lonely.size:
        raise DataFormatError(f"{probes[lonely[0]]}: identity {probe_ids[lonely[0]]} has no image in {root / 'Gallery_Match'}")
    gallery_ids = np.r_[match_ids, np.full(len(distractors), -1, np.int64)]
    return TinyFaceSet(root, probes, probe_ids, match + distractors, gallery_ids)


def rank_accuracy(
    probe_features: np.ndarray,
    probe_ids: np.ndarray,
    gallery_features: np.ndarray,
    gallery_ids: np.ndarray,
    ranks: tuple[int, ...] = TINYFACE_RANKS,
    chunk: int = 2048,
) -> dict[str, float]:
    """Closed-set rank-k identification over gallery images (cosine similarity of normalised features).

    Args:
        probe_features: ``[P, D]`` L2-normalised.
        probe_ids: ``[P]`` identities; each must occur in ``gallery_ids``.
        gallery_features: ``[G, D]`` L2-normalised.
        gallery_ids: ``[G]`` identities (-1 for distractors).
        ranks: the k of each ``rank-k``.

    Returns:
        ``{"rank-1": ..., "rank-5": ..., "rank-20": ..., "probes": P, "gallery": G}``.
    """
    pid = np.asarray(probe_ids, np.int64)
    gid = np.asarray(gallery_ids, np.int64)
    g = np.asarray(gallery_features, np.float64)
    better = np.empty(len(pid), np.int64)
    for s in range(0, len(pid), chunk):
        sim = np.asarray(probe_features[s : s + chunk], np.float64) @ g.T
        same = gid[None, :] == pid[s : s + chunk, None]
        if not same.any(axis=1).all():
            raise ValueError("a probe identity has no gallery image")
        best = np.where(same, sim, -np.inf).max(axis=1)
        better[s : s + chunk] = ((sim > best[:, None]) & ~same).sum(axis=1)
    out = {f"rank-{k}": float(np.mean(better < k)) for k in ranks}
    out.update(probes=float(len(pid)), gallery=float(len(gid)))
    return out
