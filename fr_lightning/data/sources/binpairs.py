"""Insightface verification sets (``lfw.bin``, ``cfp_fp.bin``, ...) as validation sources."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fr_lightning.data.formats.binfile import load_bin
from fr_lightning.data.formats.images import decode_image
from fr_lightning.data.pairs import PairSet
from fr_lightning.data.sources.base import ValSource
from fr_lightning.data.transforms import resize_face

__all__ = ["BinPairs"]


class BinPairs(ValSource):
    """An insightface verification set (``lfw.bin``, ``cfp_fp.bin``, ``agedb_30.bin``, ...).

    The file is loaded with the restricted unpickler; images stay encoded in memory and are
    decoded when a validation batch asks for them (about 30 MB per 6,000 pairs instead of
    450 MB decoded). Images whose size differs from ``image_size`` are resized (area
    interpolation when shrinking, bilinear when enlarging), so a 112 px file also validates a
    56 px CPU model.

    Args:
        path: The ``.bin`` file.
        name: Metric prefix (``val/<name>/acc``); default: the file stem (``lfw``, ``cfp_fp``).
    """

    def __init__(self, path: str = "data/lfw.bin", name: str | None = None) -> None:
        self.path = Path(path)
        self.name = name if name is not None else self.path.stem

    def build(self, image_size: int) -> PairSet:
        if not self.path.is_file():
            raise FileNotFoundError(f"verification set not found: {self.path}")
        bins, issame = load_bin(self.path)
        where = str(self.path)

        def load(indices: np.ndarray) -> np.ndarray:
            out = np.empty((len(indices), image_size, image_size, 3), dtype=np.uint8)
            for k, i in enumerate(np.asarray(indices).tolist()):
                img = decode_image(bins[i], f"{where}: image {i}")
                out[k] = resize_face(img, None, image_size)[0]
            return out

        return PairSet(name=self.name, issame=issame, load=load)
