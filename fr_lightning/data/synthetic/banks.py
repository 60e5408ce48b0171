"""Background and noise banks (rendered once per image size, shared by all renderers)."""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from fr_lightning.data.synthetic.constants import _AA


_N_SCENES = 8


@lru_cache(maxsize=8)
def _scene_bank(size: int) -> np.ndarray:
    """Cluttered scenes [_N_SCENES, 3·size, 3·size, 3] that backgrounds are cropped from."""
    rng = np.random.default_rng(20240611 + size)
    side = 3 * size
    bank = np.empty((_N_SCENES, side, side, 3), np.uint8)
    px = size / 112.0
    for i in range(_N_SCENES):
        scene = cv2.resize(
            rng.uniform(30, 230, (3, 3, 3)).astype(np.uint8), (side, side), interpolation=cv2.INTER_CUBIC
        )
        kind = i % 3
        n_shapes = (25, 160, 90)[kind]
        # A per-scene palette of muted colours keeps scenes coherent rather than psychedelic.
        palette = rng.uniform(0, 255, (6, 3))
        palette = (
            120.0
            + (palette - palette.mean(axis=1, keepdims=True)) * rng.uniform(0.3, 0.8)
            + (palette.mean(axis=1, keepdims=True) - 120.0) * 1.2
        )
        for _ in range(n_shapes):
            col = tuple(float(c) for c in np.clip(palette[rng.integers(6)] + rng.normal(0, 18, 3), 0, 255))
            x, y = rng.uniform(-0.1, 1.1, 2) * side
            if kind == 0:  # indoor: walls, windows, furniture
                w, h = rng.uniform(0.05, 0.5, 2) * side
                cv2.rectangle(scene, (int(x), int(y)), (int(x + w), int(y + h)), col, -1)
                if rng.random() < 0.3:
                    cv2.rectangle(
                        scene, (int(x), int(y)), (int(x + w), int(y + h)), (20.0, 20.0, 20.0), max(1, int(2 * px))
                    )
            elif kind == 1:  # outdoor: foliage and sky blobs
                ax = rng.uniform(2, 22) * px
                cv2.ellipse(
                    scene,
                    (int(x), int(y)),
                    (int(ax), int(ax * rng.uniform(0.4, 1.0))),
                    float(rng.uniform(0, 180)),
                    0,
                    360,
                    col,
                    -1,
                    _AA,
                )
            else:  # crowd / clutter: mixed shapes and lines
                r = rng.random()
                if r < 0.35:
                    pts = (rng.uniform(-1, 1, (int(rng.integers(3, 6)), 2)) * rng.uniform(5, 30) * px + (x, y)).astype(
                        np.int32
                    )
                    cv2.fillPoly(scene, [pts], col, _AA)
                elif r < 0.6:
                    x2, y2 = (x, y) + rng.normal(0, 25 * px, 2)
                    cv2.line(scene, (int(x), int(y)), (int(x2), int(y2)), col, max(1, int(rng.uniform(1, 5) * px)), _AA)
                elif r < 0.85:
                    cv2.circle(scene, (int(x), int(y)), int(rng.uniform(3, 25) * px), col, -1, _AA)
                else:  # a bright or dark face-sized blob (a bystander)
                    cv2.ellipse(scene, (int(x), int(y)), (int(22 * px), int(30 * px)), 0.0, 0, 360, col, -1, _AA)
        sigma = rng.uniform(0.6, 2.2) * px
        bank[i] = cv2.GaussianBlur(scene, (0, 0), sigma)
    bank.setflags(write=False)
    return bank


_NOISE_STD = 40.0


@lru_cache(maxsize=8)
def _noise_bank(size: int) -> np.ndarray:
    """Gaussian noise [3·size, 3·size, 3] as uint8 centred on 128 with std ``_NOISE_STD``."""
    rng = np.random.default_rng(977 + size)
    bank = np.clip(rng.normal(128.0, _NOISE_STD, (3 * size, 3 * size, 3)), 0, 255).astype(np.uint8)
    bank.setflags(write=False)
    return bank
