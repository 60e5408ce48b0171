"""Readers for the IJB-B / IJB-C protocol files in the layout insightface's scripts use.

``ROOT`` holds ``loose_crop/<image>`` (the uncropped detections) and ``meta/``:

* ``<t>_face_tid_mid.txt``: ``image template_id media_id`` per image;
* ``<t>_name_5pts_score.txt``: ``image x1 y1 ... x5 y5 faceness`` per image, same images in the
  same order;
* ``<t>_template_pair_label.txt``: ``template1 template2 label`` per 1:1 comparison (label 1 =
  same subject);
* 1:N (optional): ``<t>_1N_gallery_G1.csv``, ``<t>_1N_gallery_G2.csv`` (IJB-B: ``_S1``, ``_S2``)
  and ``<t>_1N_probe_mixed.csv``, comma separated with a header row, columns ``TEMPLATE_ID,
  SUBJECT_ID, ...`` (one row per image, so template ids repeat);

with ``<t>`` = ``ijbc`` or ``ijbb``. Every parse error names the file and the line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fr_lightning.data import DataFormatError
from fr_lightning.data.formats.text import text_lines

__all__ = ["IJBGallery", "IJBSet", "detect_target", "load_ijb", "read_face_tid_mid", "read_name_5pts_score", "read_pair_label", "read_template_subjects"]

#: 1:N gallery names per target (insightface's file names).
GALLERIES = {"ijbc": ("G1", "G2"), "ijbb": ("S1", "S2")}


@dataclass
class IJBGallery:
    """A 1:N template list: ``templates[i]`` belongs to ``subjects[i]`` (one entry per template)."""

    templates: np.ndarray
    subjects: np.ndarray


@dataclass
class IJBSet:
    """Everything the IJB protocol needs, per image in ``name_5pts_score`` order.

    Attributes:
        root: the data set folder (``meta/`` and ``loose_crop/`` inside).
        target: ``"ijbc"`` or ``"ijbb"``.
        names: ``[N]`` image file names, relative to ``loose_crop/``.
        templates, medias: ``[N]`` int64 template and media id of each image.
        landmarks: ``[N, 5, 2]`` float32 landmarks in loose-crop pixels.
        faceness: ``[N]`` float32 detector scores.
        t1, t2, labels: ``[P]`` int64 1:1 template pairs and their labels.
        galleries: 1:N galleries by name (empty when the 1:N files are absent).
        probes: 1:N probe templates (``None`` when absent).
    """

    root: Path
    target: str
    names: list[str]
    templates: np.ndarray
    medias: np.ndarray
    landmarks: np.ndarray
    faceness: np.ndarray
    t1: np.ndarray
    t2: np.ndarray
    labels: np.ndarray
    galleries: dict[str, IJBGallery] = field(default_factory=dict)
    probes: IJBGallery | None = None

    def image_path(self, i: int) -> Path:
        """Path of image ``i`` under ``loose_crop/``."""
        return self.root / "loose_crop" / self.names[i]


def _lines(path: Path) -> list[tuple[int, list[str]]]:
    """Non-empty lines of ``path`` as (1-based line number, whitespace-split fields)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    out = []
    for lineno, line in text_lines(path):
        fields = line.split()
        if fields:
            out.append((lineno, fields))
    if not out:
        raise DataFormatError(f"{path}: the file is empty")
    return out


def _ints(path: Path, lineno: int, values: list[str], what: str) -> list[int]:
    try:
        out = [int(v) for v in values]
    except ValueError:
        raise DataFormatError(f"{path}, line {lineno}: expected integer {what}, got {' '.join(values)[:80]!r}") from None
    if any(not -(2**63) <= v < 2**63 for v in out):
        raise DataFormatError(f"{path}, line {lineno}: {what} out of the 64-bit integer range")
    return out


def read_face_tid_mid(path: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``image template media`` lines -> (names, templates, medias)."""
    names, tids, mids = [], [], []
    for lineno, f in _lines(path):
        if len(f) != 3:
            raise DataFormatError(f"{path}, line {lineno}: expected 'image template_id media_id', got {len(f)} fields")
        t, m = _ints(path, lineno, f[1:], "template and media ids")
        names.append(f[0])
        tids.append(t)
        mids.append(m)
    return names, np.asarray(tids, np.int64), np.asarray(mids, np.int64)


def read_name_5pts_score(path: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``image x1 y1 ... x5 y5 score`` lines -> (names, landmarks [N, 5, 2], faceness [N])."""
    names, lms, scores = [], [], []
    for lineno, f in _lines(path):
        if len(f) != 12:
            raise DataFormatError(f"{path}, line {lineno}: expected 'image x1 y1 ... x5 y5 faceness' (12 fields), got {len(f)}")
        try:
            values = [float(v) for v in f[1:]]
        except ValueError:
            raise DataFormatError(f"{path}, line {lineno}: landmarks and faceness must be numbers, got {' '.join(f[1:])[:80]!r}") from None
        with np.errstate(over="ignore"):
            as_float32 = np.asarray(values, np.float32)
        if not np.all(np.isfinite(as_float32)):  # also values beyond float32's range
            raise DataFormatError(f"{path}, line {lineno}: non-finite landmark or faceness value")
        names.append(f[0])
        lms.append(values[:10])
        scores.append(values[10])
    return names, np.asarray(lms, np.float32).reshape(-1, 5, 2), np.asarray(scores, np.float32)


def read_pair_label(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``template1 template2 label`` lines -> (t1, t2, labels); labels must be 0 or 1."""
    rows = []
    for lineno, f in _lines(path):
        if len(f) != 3:
            raise DataFormatError(f"{path}, line {lineno}: expected 'template1 template2 label', got {len(f)} fields")
        row = _ints(path, lineno, f, "template ids and label")
        if row[2] not in (0, 1):
            raise DataFormatError(f"{path}, line {lineno}: label must be 0 or 1, got {row[2]}")
        rows.append(row)
    arr = np.asarray(rows, np.int64).reshape(-1, 3)
    return arr[:, 0].copy(), arr[:, 1].copy(), arr[:, 2].copy()


def read_template_subjects(path: Path) -> IJBGallery:
    """A 1:N csv (header row, then ``TEMPLATE_ID,SUBJECT_ID,...`` per image) -> one entry per template."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    seen: dict[int, int] = {}
    where: dict[int, int] = {}
    for lineno, line in text_lines(path):
        fields = [v.strip() for v in line.strip().split(",")]
        if not line.strip() or (lineno == 1 and not fields[0].lstrip("-").isdigit()):
            continue  # blank line or the header
        if len(fields) < 2:
            raise DataFormatError(f"{path}, line {lineno}: expected 'TEMPLATE_ID,SUBJECT_ID,...', got {line.strip()[:80]!r}")
        t, s = _ints(path, lineno, fields[:2], "TEMPLATE_ID and SUBJECT_ID")
        if seen.setdefault(t, s) != s:
            raise DataFormatError(f"{path}, line {lineno}: template {t} has subject {s} here but {seen[t]} on line {where[t]}")
        where.setdefault(t, lineno)
    if not seen:
        raise DataFormatError(f"{path}: no templates")
    tids = np.asarray(sorted(seen), np.int64)
    return IJBGallery(templates=tids, subjects=np.asarray([seen[t] for t in tids.tolist()], np.int64))


def detect_target(root: Path) -> str:
    """``"ijbc"`` or ``"ijbb"``: whichever ``meta/<t>_face_tid_mid.txt`` exists (IJB-C first)."""
    for target in ("ijbc", "ijbb"):
        if (root / "meta" / f"{target}_face_tid_mid.txt").is_file():
            return target
    raise FileNotFoundError(f"{root}/meta: neither ijbc_face_tid_mid.txt nor ijbb_face_tid_mid.txt found")


def load_ijb(root: str | Path, target: str | None = None, one_to_n: bool = True) -> IJBSet:
    """Read and cross-check the protocol files of an IJB folder.

    Args:
        root: folder holding ``meta/`` and ``loose_crop/``.
        target: ``"ijbc"``/``"ijbb"`` (case-insensitive, ``IJBC`` works too); detected when ``None``.
        one_to_n: also read the 1:N gallery and probe lists when they exist.

    Raises:
        FileNotFoundError: a required file is missing.
        DataFormatError: a malformed line, or the image lists disagree (file and line named).
    """
    root = Path(root)
    target = detect_target(root) if target is None else target.lower().replace("-", "")
    if target not in GALLERIES:
        raise ValueError(f"target must be IJBC or IJBB, got {target!r}")
    meta = root / "meta"
    tid_file, lmk_file = meta / f"{target}_face_tid_mid.txt", meta / f"{target}_name_5pts_score.txt"
    names, templates, medias = read_face_tid_mid(tid_file)
    names5, landmarks, faceness = read_name_5pts_score(lmk_file)
    if len(names5) != len(names):
        raise DataFormatError(f"{lmk_file}: {len(names5)} images but {tid_file} lists {len(names)}")
    for i, (a, b) in enumerate(zip(names, names5)):
        if a != b:
            raise DataFormatError(f"{lmk_file}, image {i + 1} ({b}) differs from {tid_file} image {i + 1} ({a}); both lists must be in the same order")
    pair_file = meta / f"{target}_template_pair_label.txt"
    t1, t2, labels = read_pair_label(pair_file)
    known = np.unique(templates)
    for arr, col in ((t1, 1), (t2, 2)):
        bad = np.flatnonzero(~np.isin(arr, known))
        if bad.size:
            raise DataFormatError(f"{pair_file}: pair {bad[0] + 1} uses template {arr[bad[0]]} (column {col}) that has no image in {tid_file}")
    out = IJBSet(root, target, names, templates, medias, landmarks, faceness, t1, t2, labels)
    files = {g: meta / f"{target}_1N_gallery_{g}.csv" for g in GALLERIES[target]}
    probe_file = meta / f"{target}_1N_probe_mixed.csv"
    if one_to_n and probe_file.is_file():
        for name, path in files.items():
            out.galleries[name] = read_template_subjects(path)
        out.probes = read_template_subjects(probe_file)
        for path, g in [*((files[n], out.galleries[n]) for n in files), (probe_file, out.probes)]:
            missing = g.templates[~np.isin(g.templates, known)]
            if missing.size:
                raise DataFormatError(f"{path}: template {missing[0]} has no image in {tid_file}")
    return out
