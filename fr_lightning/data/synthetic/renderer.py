"""The renderer: :class:`FaceRenderer` and the :class:`RenderedBatch` it returns."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fr_lightning.data.synthetic.banks import _noise_bank, _scene_bank
from fr_lightning.data.synthetic.colour import jitter_colours
from fr_lightning.data.synthetic.constants import TEMPLATE_112
from fr_lightning.data.synthetic.drawing import DrawingMixin
from fr_lightning.data.synthetic.geometry import GeometryMixin
from fr_lightning.data.synthetic.identity import IdentityMixin
from fr_lightning.data.synthetic.nuisance import Nuisance, NuisanceMixin
from fr_lightning.data.synthetic.rng import _Draws, _key


@dataclass(frozen=True)
class RenderedBatch:
    """A batch of rendered faces.

    Attributes:
        images: uint8 [N, H, W, 3] RGB.
        labels: int64 [N] identity ids (as passed in).
        landmarks: float32 [N, 5, 2] pixel (x, y) of left eye, right eye, nose tip, left and right
            mouth corner (left = smaller x on a frontal face), insightface order.
        pose: float32 [N, 3] yaw, pitch, roll in degrees.
        group: int64 [N] demographic group 0..3.
    """

    images: np.ndarray
    labels: np.ndarray
    landmarks: np.ndarray
    pose: np.ndarray
    group: np.ndarray


class FaceRenderer(IdentityMixin, NuisanceMixin, GeometryMixin, DrawingMixin):
    """Deterministic renderer of synthetic faces, aligned like insightface 112×112 crops.

    Args:
        seed: fixes every identity's look and every sample's nuisance.
        image_size: output side in pixels (faces are drawn directly at this size).
        group_probs: probabilities of the 4 demographic groups among identities.
        profile_prob: fraction of samples drawn as profiles (|yaw| uniform in [0.4, 1] · max_yaw).
        max_yaw: largest |yaw| in degrees.
        nuisance_scale: multiplies every nuisance strength (0 = clean, frontal, canonical faces).
        identity_scale: multiplies the spread of identity shape parameters (smaller = harder).
        nuisance: per-nuisance strengths (default :class:`Nuisance`).
        colour_jitter: per-sample colour variation within an identity, in [0, 1] (0 = identity
            colours fixed, the default; 1 = skin, hair and iris colour drawn per sample, so
            identity lives in shape and fine detail; see :mod:`.colour`).
    """

    def __init__(
        self,
        seed: int = 0,
        image_size: int = 112,
        group_probs: tuple[float, float, float, float] = (0.55, 0.25, 0.12, 0.08),
        profile_prob: float = 0.15,
        max_yaw: float = 80.0,
        nuisance_scale: float = 1.0,
        identity_scale: float = 1.0,
        nuisance: Nuisance | None = None,
        colour_jitter: float = 0.0,
    ) -> None:
        if image_size < 16:
            raise ValueError(f"image_size must be >= 16, got {image_size}")
        probs = np.asarray(group_probs, np.float64)
        if probs.shape != (4,) or (probs < 0).any() or probs.sum() <= 0:
            raise ValueError(f"group_probs must be 4 non-negative numbers, got {group_probs}")
        if not 0.0 <= max_yaw <= 89.0:
            raise ValueError(f"max_yaw must be in [0, 89], got {max_yaw}")
        if not 0.0 <= colour_jitter <= 1.0:
            raise ValueError(f"colour_jitter must be in [0, 1], got {colour_jitter}")
        self.seed = int(seed)
        self.image_size = int(image_size)
        self.group_probs = tuple(float(p) for p in probs / probs.sum())
        self.profile_prob = float(profile_prob)
        self.max_yaw = float(max_yaw)
        self.nuisance_scale = float(nuisance_scale)
        self.identity_scale = float(identity_scale)
        self.nuisance = nuisance if nuisance is not None else Nuisance()
        self.colour_jitter = float(colour_jitter)
        self._group_cum = np.cumsum(self.group_probs)
        self._template = TEMPLATE_112.astype(np.float64) * (self.image_size / 112.0)
        # Build the banks now rather than in the first render; they are cached per image size
        # (not stored on the instance, so a renderer pickles small for DataLoader workers).
        _scene_bank(self.image_size)
        _noise_bank(self.image_size)

    # ---------------------------------------------------------------------------------------
    # Parameters
    # ---------------------------------------------------------------------------------------

    def group_of(self, identities: np.ndarray) -> np.ndarray:
        """Demographic group (0..3) of each identity, fixed by (seed, identity) and ``group_probs``."""
        ids = np.asarray(identities, np.int64).reshape(-1)
        u = _Draws(_key(self.seed, 3, ids), 1).u()
        return np.minimum(np.searchsorted(self._group_cum, u, side="right"), 3).astype(np.int64)

    def render(
        self,
        identities: np.ndarray,
        indices: np.ndarray,
        yaw: np.ndarray | None = None,
        group: np.ndarray | None = None,
    ) -> RenderedBatch:
        """Render one face per (identity, index) pair.

        Args:
            identities: int [N] identity ids (any non-negative integers).
            indices: int [N] sample index within the identity (selects the nuisance).
            yaw: optional float [N] yaw in degrees overriding the sampled yaw.
            group: optional int [N] demographic group (0..3) overriding each identity's group.

        Returns:
            The rendered batch; sample k depends only on (seed, identities[k], indices[k]) and the
            overrides.
        """
        ids = np.asarray(identities, np.int64).reshape(-1)
        idx = np.broadcast_to(np.asarray(indices, np.int64), ids.shape).copy()
        n, S = len(ids), self.image_size
        groups = self.group_of(ids) if group is None else np.broadcast_to(np.asarray(group, np.int64), ids.shape).copy()
        if ((groups < 0) | (groups > 3)).any():
            raise ValueError("group must be in 0..3")
        images = np.empty((n, S, S, 3), np.uint8)
        if n == 0:
            return RenderedBatch(images, ids, np.zeros((0, 5, 2), np.float32), np.zeros((0, 3), np.float32), groups)
        idp = self._identity(ids, groups)
        if self.colour_jitter > 0.0:
            idp = jitter_colours(idp, self.seed, ids, idx, self.colour_jitter)
        nup = self._nuisance(ids, idx)
        if yaw is not None:
            nup["yaw"] = np.broadcast_to(np.asarray(yaw, np.float64), ids.shape).copy()
        g = self._geometry(idp, nup)
        self._draw_batch(images, idp, nup, g)
        pose = np.stack([nup["yaw"], nup["pitch"], nup["roll"]], axis=1).astype(np.float32)
        return RenderedBatch(images=images, labels=ids, landmarks=g["landmarks"], pose=pose, group=groups)
