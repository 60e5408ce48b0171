"""One face per photo: thresholds on score and size, then the largest or the most central face.

``central`` is the rule insightface's ``SCRFD.detect(max_num=...)`` applies by default (box area
minus twice the squared distance from the box centre to the photo centre), so a large face
near the middle wins over a slightly larger one at the edge, and a small background face in
the middle does not win over the subject. ``largest`` is its ``metric='max'`` (box area).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from fr_lightning.detect.scrfd import Detections

__all__ = ["PICK_RULES", "Screened", "face_size", "pick_face", "screen"]

PICK_RULES = ("largest", "central")


def face_size(boxes: np.ndarray) -> np.ndarray:
    """Size of each box ``[N, 4]`` in px: its shorter side."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.minimum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])


class Screened(NamedTuple):
    """Detections of one photo split by the thresholds.

    Attributes:
        faces: score >= ``score`` and size >= ``min_face``: the candidates to pick from.
        low_score: detections below ``score`` (but above the detector's floor).
        small: detections at or above ``score`` but smaller than ``min_face`` px.
    """

    faces: Detections
    low_score: Detections
    small: Detections


def screen(dets: Detections, score: float = 0.5, min_face: float = 0.0) -> Screened:
    """Split ``dets`` by ``score`` and ``min_face`` (see :class:`Screened`)."""
    if not 0.0 <= score <= 1.0:
        raise ValueError(f"--score is a probability in [0, 1], got {score}")
    if min_face < 0:
        raise ValueError(f"--min-face is a size in px (>= 0), got {min_face}")
    confident = dets.scores >= score
    big = face_size(dets.boxes) >= min_face
    return Screened(dets.take(confident & big), dets.take(~confident), dets.take(confident & ~big))


def pick_face(dets: Detections, image_shape: tuple[int, ...], rule: str = "largest") -> int:
    """Index of the face to keep among ``dets`` (at least one) of a photo of shape ``(H, W, ...)``.

    Args:
        dets: the candidate faces.
        image_shape: the photo's shape.
        rule: ``largest`` (box area) or ``central`` (area - 2 x squared offset from the centre).
    """
    if rule not in PICK_RULES:
        raise ValueError(f"--pick must be one of {PICK_RULES}, got {rule!r}")
    if len(dets) == 0:
        raise ValueError("no face to pick from")
    b = np.asarray(dets.boxes, np.float64)
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    if rule == "largest":
        value = area
    else:
        h, w = image_shape[:2]
        dx = (b[:, 0] + b[:, 2]) / 2 - w // 2
        dy = (b[:, 1] + b[:, 3]) / 2 - h // 2
        value = area - 2.0 * (dx**2 + dy**2)
    return int(np.argmax(value))  # ties: the first, i.e. the higher score
