"""Raw photos -> aligned training crops: detect, pick one face, align, report what happened to every photo.

``prepare_folder(RAW, OUT, detector)`` reads every image below ``RAW`` (identity folders
``RAW/<identity>/*.jpg`` are kept as ``OUT/<identity>/...``, so ``fr data convert OUT`` packs the
result), and writes into ``OUT``:

- one aligned crop per photo in which a face passed the thresholds;
- ``landmarks.txt``: the picked face's 5 points in photo pixels (``path x1 y1 ... x5 y5``, the
  format ``fr data align RAW landmarks.txt OUT`` reads, so alignment can be re-run or checked
  on its own);
- ``prepare_report.json``: counts and the names of every photo that gave no crop or had several
  faces (nothing is dropped without being listed).

The whole output is built in a temporary folder beside ``OUT`` and renamed into place at the
end, so an interrupted or failed run leaves no ``OUT`` that looks complete.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from fr_lightning.detect.pick import pick_face, screen
from fr_lightning.detect.scrfd import SCRFD, Detections

__all__ = ["LOW_SCORE_FLOOR", "REPORT_NAME", "LANDMARKS_NAME", "detect_landmarks", "detect_one", "list_photos", "prepare_folder", "summary_lines"]

#: Detections down to this score are found (and counted as "below --score") even when --score is higher.
LOW_SCORE_FLOOR = 0.2
REPORT_NAME = "prepare_report.json"
LANDMARKS_NAME = "landmarks.txt"
_PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def list_photos(raw: Path) -> tuple[list[str], list[str]]:
    """``(photos, other files)`` below ``raw`` as sorted POSIX paths relative to it (hidden entries skipped)."""
    photos, others = [], []
    for dirpath, dirnames, filenames in os.walk(raw):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            rel = (Path(dirpath) / name).relative_to(raw).as_posix()
            (photos if name.lower().endswith(_PHOTO_SUFFIXES) else others).append(rel)
    return sorted(photos), sorted(others)


def detect_one(
    image: np.ndarray, detector: SCRFD, pick: str = "largest", min_face: float = 0.0, score: float = 0.5
) -> tuple[np.ndarray | None, dict[str, Any]]:
    """The picked face's ``[5, 2]`` landmarks in a BGR photo (None: no face) and what was found.

    The second value holds ``faces`` (how many passed ``score`` and ``min_face``), ``low_score``
    and ``small`` (detections that missed one threshold), and for a picked face its ``box`` and
    ``score``.
    """
    dets = detector.detect(image, min(score, LOW_SCORE_FLOOR))
    split = screen(dets, score, min_face)
    info: dict[str, Any] = {"faces": len(split.faces), "low_score": len(split.low_score), "small": len(split.small)}
    if not len(split.faces):
        return None, info
    k = pick_face(split.faces, image.shape, pick)
    info.update(box=[round(float(v), 2) for v in split.faces.boxes[k]], score=round(float(split.faces.scores[k]), 4))
    return split.faces.landmarks[k].astype(np.float64), info


def detect_landmarks(
    files: list[Path],
    names: list[str],
    detector: SCRFD,
    pick: str = "largest",
    min_face: float = 0.0,
    score: float = 0.5,
    progress: bool = True,
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """``({name: [5, 2] landmarks of the picked face}, {name: why there is none})`` for photo files.

    The reasons are ``undecodable``, ``nothing detected``, ``below --score`` and ``below --min-face``.
    """
    from tqdm import tqdm

    found: dict[str, np.ndarray] = {}
    missing: dict[str, str] = {}
    for path, name in tqdm(list(zip(files, names)), unit="photo", desc="detect", disable=not progress, file=sys.stderr):
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            missing[name] = "undecodable"
            continue
        try:
            landmarks, info = detect_one(image, detector, pick, min_face, score)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None
        if landmarks is None:
            missing[name] = _no_face_reason(info)
        else:
            found[name] = landmarks
    return found, missing


def _no_face_reason(info: dict[str, Any]) -> str:
    if info["small"]:
        return "below --min-face"
    if info["low_score"]:
        return "below --score"
    return "nothing detected"


def _crop_name(rel: str) -> str:
    p = Path(rel)
    return (p if p.suffix.lower() in (".jpg", ".jpeg", ".png") else p.with_suffix(".png")).as_posix()


def _check_out(raw: Path, out: Path) -> None:
    if out.resolve() == raw.resolve() or raw.resolve() in out.resolve().parents:
        raise ValueError(f"the output folder {out} must not be inside the photo folder {raw}")
    if out.exists():
        if not out.is_dir():
            raise FileExistsError(f"{out} exists and is not a folder")
        if any(out.iterdir()) and not (out / REPORT_NAME).is_file():
            raise FileExistsError(f"{out} exists and is not empty (and holds no {REPORT_NAME} of an earlier run); choose a new folder")


def _replace_folder(tmp: Path, out: Path) -> None:
    """Move the finished ``tmp`` to ``out``; an earlier output there is removed only after the move."""
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    if old.exists():
        shutil.rmtree(old)


def prepare_folder(
    raw: str | Path,
    out: str | Path,
    detector: SCRFD,
    pick: str = "largest",
    min_face: float = 0.0,
    score: float = 0.5,
    size: int = 112,
    progress: bool = True,
) -> dict[str, Any]:
    """Detect, pick, align and write every photo below ``raw`` into ``out``; returns the report.

    Args:
        raw: photo folder (``raw/<identity>/*.jpg``; any depth is kept as it is).
        out: output folder (new, empty or an earlier output of this function).
        detector: the face detector.
        pick: ``largest`` or ``central`` face when a photo has several.
        min_face: faces whose box is smaller than this (shorter side, px) do not count.
        score: faces scoring below this do not count.
        size: side of the aligned crops (the 5-point template is scaled by ``size / 112``).
        progress: show a progress bar on stderr.

    Raises:
        FileNotFoundError: ``raw`` is not a folder.
        FileExistsError: ``out`` holds something other than an earlier output.
        ValueError: no photos, bad thresholds, or the detector fails on a photo.
    """
    from tqdm import tqdm

    from fr_lightning.data.align import align_face
    from fr_lightning.detect.pick import PICK_RULES
    from fr_lightning.utils.atomic import write_json_atomic

    raw, out = Path(raw), Path(out)
    if not raw.is_dir():
        raise FileNotFoundError(f"photo folder not found: {raw}")
    if pick not in PICK_RULES:
        raise ValueError(f"--pick must be one of {PICK_RULES}, got {pick!r}")
    screen(Detections(np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2))), score, min_face)  # validates both
    if size < 16:
        raise ValueError(f"--size must be >= 16 px, got {size}")
    _check_out(raw, out)
    photos, others = list_photos(raw)
    if not photos:
        raise ValueError(f"{raw}: no photos found (suffixes {', '.join(_PHOTO_SUFFIXES)})")

    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    counts = {"one_face": 0, "several_faces": 0, "no_face": 0, "undecodable": 0}
    reasons = {"nothing detected": 0, "below --score": 0, "below --min-face": 0}
    no_face: dict[str, str] = {}
    several: dict[str, int] = {}
    undecodable: list[str] = []
    lines = ["# path x1 y1 x2 y2 x3 y3 x4 y4 x5 y5: picked face, photo pixels, insightface order (fr data align reads it)\n"]
    crops_per_identity: dict[str, int] = {}
    try:
        for rel in tqdm(photos, unit="photo", desc="fr data align", disable=not progress, file=sys.stderr):
            image = cv2.imread(str(raw / rel), cv2.IMREAD_COLOR)
            if image is None:
                counts["undecodable"] += 1
                undecodable.append(rel)
                continue
            try:
                landmarks, info = detect_one(image, detector, pick, min_face, score)
            except ValueError as err:
                raise ValueError(f"{raw / rel}: {err}") from None
            if landmarks is None:
                counts["no_face"] += 1
                no_face[rel] = _no_face_reason(info)
                reasons[no_face[rel]] += 1
                continue
            if info["faces"] > 1:
                counts["several_faces"] += 1
                several[rel] = int(info["faces"])
            else:
                counts["one_face"] += 1
            aligned, _ = align_face(image, landmarks, size)
            dst = tmp / _crop_name(rel)
            dst.parent.mkdir(parents=True, exist_ok=True)
            params = [cv2.IMWRITE_JPEG_QUALITY, 95] if dst.suffix.lower() in (".jpg", ".jpeg") else []
            if not cv2.imwrite(str(dst), aligned, params):
                raise OSError(f"cannot write {out / _crop_name(rel)}")
            lines.append(rel + "".join(f" {v:.4f}" for v in landmarks.reshape(-1)) + "\n")
            top = rel.split("/")[0] if "/" in rel else ""
            crops_per_identity[top] = crops_per_identity.get(top, 0) + 1
        identities = sorted({p.split("/")[0] for p in photos if "/" in p})
        report: dict[str, Any] = {
            "raw": str(raw),
            "out": str(out),
            "detector": str(detector.source),
            "settings": {
                "pick": pick,
                "min_face": min_face,
                "score": score,
                "size": size,
                "nms": detector.nms_threshold,
                "input_size": list(detector.input_size),
            },
            "photos": len(photos),
            **counts,
            "aligned": counts["one_face"] + counts["several_faces"],
            "no_face_reasons": reasons,
            "identities": len(identities),
            "identities_without_crops": [d for d in identities if not crops_per_identity.get(d)],
            "files": {
                "no_face": no_face,
                "several_faces": several,
                "undecodable": undecodable,
                "not_photos": others,
                "outside_identity_folders": [p for p in photos if "/" not in p],
            },
        }
        (tmp / LANDMARKS_NAME).write_text("".join(lines), encoding="utf-8")
        write_json_atomic(tmp / REPORT_NAME, report)
        _replace_folder(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return report


def summary_lines(report: dict[str, Any]) -> list[str]:
    """The printed summary of a :func:`prepare_folder` report."""
    r, files = report, report["files"]
    reasons = ", ".join(f"{k}: {v}" for k, v in r["no_face_reasons"].items() if v)
    lines = [
        f"{r['photos']} photos read from {r['raw']}: {r['one_face']} with one face, {r['several_faces']} with several "
        f"(the {r['settings']['pick']} one kept), {r['no_face']} with no face{f' ({reasons})' if reasons else ''}, "
        f"{r['undecodable']} undecodable",
        f"wrote {r['aligned']} aligned {r['settings']['size']}x{r['settings']['size']} crops, "
        f"{LANDMARKS_NAME} and {REPORT_NAME} to {r['out']}",
    ]
    if files["undecodable"]:
        shown = ", ".join(files["undecodable"][:5]) + (" ..." if len(files["undecodable"]) > 5 else "")
        lines.append(f"undecodable: {shown}")
    if files["no_face"]:
        shown = ", ".join(list(files["no_face"])[:5]) + (" ..." if len(files["no_face"]) > 5 else "")
        lines.append(f"no face: {shown} (all listed in {REPORT_NAME})")
    if files["not_photos"]:
        lines.append(f"{len(files['not_photos'])} files that are not photos were not read, e.g. {files['not_photos'][0]}")
    if files["outside_identity_folders"]:
        lines.append(
            f"{len(files['outside_identity_folders'])} photos are not in an identity folder (e.g. "
            f"{files['outside_identity_folders'][0]}); fr data convert packs identity folders only"
        )
    if r["identities_without_crops"]:
        lines.append(f"identity folders with no crop: {', '.join(r['identities_without_crops'][:5])}")
    return lines
