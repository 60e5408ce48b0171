"""Face detection for preparing photos: an SCRFD / RetinaFace 5-point detector on onnxruntime,
one-face-per-photo picking, and the photo folder -> aligned crops step with its report."""

from __future__ import annotations

from fr_lightning.detect.pick import PICK_RULES, Screened, face_size, pick_face, screen
from fr_lightning.detect.prepare import LANDMARKS_NAME, REPORT_NAME, detect_landmarks, detect_one, list_photos, prepare_folder, summary_lines
from fr_lightning.detect.scrfd import (
    DEFAULT_INPUT_SIZE,
    SCRFD,
    Detections,
    anchor_centres,
    decode,
    distance_to_boxes,
    distance_to_points,
    letterbox,
    nms,
)

__all__ = [
    "DEFAULT_INPUT_SIZE",
    "LANDMARKS_NAME",
    "PICK_RULES",
    "REPORT_NAME",
    "SCRFD",
    "Detections",
    "Screened",
    "anchor_centres",
    "decode",
    "detect_landmarks",
    "detect_one",
    "distance_to_boxes",
    "distance_to_points",
    "face_size",
    "letterbox",
    "list_photos",
    "nms",
    "pick_face",
    "prepare_folder",
    "screen",
    "summary_lines",
]
