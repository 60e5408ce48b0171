"""Encoded face images: JPEG/PNG bytes as OpenCV writes them (BGR order on disk, RGB in memory)."""

from __future__ import annotations

import cv2
import numpy as np

from fr_lightning.data.errors import DataFormatError

__all__ = ["encode_image", "decode_image"]


def encode_image(img_rgb: np.ndarray, quality: int = 95, img_fmt: str = ".jpg") -> bytes:
    """Encode an RGB (or grey) uint8 image to JPEG/PNG bytes as OpenCV writes them (BGR order)."""
    img = np.asarray(img_rgb)
    if img.dtype != np.uint8 or not (img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 3)):
        raise ValueError(f"expected a uint8 [H, W, 3] RGB image, got {img.dtype} {img.shape}")
    fmt = img_fmt.lower()
    if fmt in (".jpg", ".jpeg"):
        params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    elif fmt == ".png":
        params = []
    else:
        raise ValueError(f"img_fmt must be '.jpg' or '.png', got {img_fmt!r}")
    bgr = img if img.ndim == 2 else np.ascontiguousarray(img[:, :, ::-1])
    ok, buf = cv2.imencode(fmt, bgr, params)
    if not ok:
        raise ValueError(f"OpenCV failed to encode a {img.shape} image as {fmt}")
    return buf.tobytes()


def decode_image(buf: bytes | bytearray | memoryview | np.ndarray, where: str) -> np.ndarray:
    """Decode JPEG/PNG bytes to an RGB uint8 ``[H, W, 3]`` array.

    Raises:
        DataFormatError: The bytes are not a decodable image (``where`` names the file and key).
    """
    arr = buf if isinstance(buf, np.ndarray) else np.frombuffer(buf, dtype=np.uint8)
    if arr.size == 0:
        raise DataFormatError(f"{where}: empty image data")
    try:
        img = cv2.imdecode(arr.reshape(-1).astype(np.uint8, copy=False), cv2.IMREAD_COLOR)
    except cv2.error as exc:
        raise DataFormatError(f"{where}: cannot decode image ({arr.size} bytes): {exc}") from None
    if img is None:
        raise DataFormatError(f"{where}: cannot decode image ({arr.size} bytes, corrupt or not JPEG/PNG)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
