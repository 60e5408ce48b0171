"""5-point face alignment to insightface's 112×112 template (least-squares similarity + affine warp).

The similarity (rotation, uniform scale, translation; no reflection) that best maps the detected
landmarks onto the template in the least-squares sense has a closed form (Umeyama, 1991): centre
both point sets, take the SVD of their cross-covariance, fix the sign so the rotation is proper,
and read the scale off the singular values.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from fr_lightning.utils.atomic import temp_name

__all__ = ["TEMPLATE_112", "template", "similarity_transform", "transform_points", "align_face", "write_image_folder"]

#: Landmark positions of an aligned 112×112 crop, in insightface order: left eye, right eye,
#: nose tip, left mouth corner, right mouth corner.
TEMPLATE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)


def template(size: int = 112) -> np.ndarray:
    """The 5-point template for a ``size``×``size`` crop (the 112 template scaled by ``size / 112``)."""
    return TEMPLATE_112 * (size / 112.0)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity mapping points ``src`` onto ``dst``.

    Args:
        src: ``[K, 2]`` source points (K >= 2, not all equal).
        dst: ``[K, 2]`` target points.

    Returns:
        ``[2, 3]`` float64 matrix ``M`` with ``dst ≈ M[:, :2] @ p + M[:, 2]`` for each point ``p``.
    """
    src = np.asarray(src, dtype=np.float64).reshape(-1, 2)
    dst = np.asarray(dst, dtype=np.float64).reshape(-1, 2)
    if src.shape != dst.shape or len(src) < 2:
        raise ValueError(f"need matching [K>=2, 2] point sets, got {src.shape} and {dst.shape}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    sc, dc = src - mu_s, dst - mu_d
    var_s = (sc**2).sum() / len(src)
    if var_s <= 1e-12:
        raise ValueError("source points are all at the same place; cannot estimate a similarity")
    cov = dc.T @ sc / len(src)
    u, d, vt = np.linalg.svd(cov)
    # Force det(R) = +1: a reflection is never a valid face alignment.
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1.0
    rot = u @ np.diag(sign) @ vt
    scale = float((d * sign).sum() / var_s)
    out = np.empty((2, 3), dtype=np.float64)
    out[:, :2] = scale * rot
    out[:, 2] = mu_d - scale * rot @ mu_s
    return out


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a ``[2, 3]`` affine matrix to ``[..., 2]`` points."""
    pts = np.asarray(points, dtype=np.float64)
    return pts @ matrix[:, :2].T + matrix[:, 2]


def align_face(
    image: np.ndarray, landmarks: np.ndarray, size: int = 112, border: int = cv2.BORDER_CONSTANT
) -> tuple[np.ndarray, np.ndarray]:
    """Warp a face so its 5 landmarks land on the standard template.

    Args:
        image: ``[H, W, 3]`` uint8 image (any channel order; it is only resampled).
        landmarks: ``[5, 2]`` (x, y) pixel positions in insightface order.
        size: output side in px (the template is scaled by ``size / 112``).
        border: OpenCV border mode for pixels outside the source.

    Returns:
        ``(aligned [size, size, 3] uint8, landmarks mapped into the aligned crop [5, 2] float32)``.
    """
    lm = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    matrix = similarity_transform(lm, template(size))
    aligned = cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=border, borderValue=0)
    return aligned, transform_points(lm, matrix).astype(np.float32)


def write_image_folder(out: str | Path, images: Iterable[tuple[str, np.ndarray]]) -> int:
    """Write ``(relative path, BGR uint8 image)`` items as a folder of images, all or nothing.

    Images go into a temporary sibling folder (``.<name>.tmp-<pid>``) that replaces ``out`` only
    once every item is written: an exception from ``images`` (a refused input), a full disk or a
    kill leaves ``out`` as it was. JPEG at quality 95 for ``.jpg``/``.jpeg``; other suffixes
    become ``.png`` (lossless).

    Returns:
        The number of images written.

    Raises:
        OSError: An image could not be encoded or written (names the file).
    """
    out = Path(out)
    tmp = temp_name(out)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    n = 0
    try:
        for rel, image in images:
            dst = tmp / rel
            if dst.suffix.lower() not in (".jpg", ".jpeg", ".png"):
                dst = dst.with_suffix(".png")
            params = [cv2.IMWRITE_JPEG_QUALITY, 95] if dst.suffix.lower() in (".jpg", ".jpeg") else []
            ok, buf = cv2.imencode(dst.suffix, image, params)
            if not ok:
                raise OSError(f"cannot encode {out / dst.relative_to(tmp)}")
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                dst.write_bytes(buf.tobytes())
            except OSError as exc:
                raise type(exc)(exc.errno, exc.strerror, str(out / dst.relative_to(tmp))) from exc
            n += 1
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        if out.exists():
            os.replace(out, old)  # the window without ``out`` is two renames long
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return n
