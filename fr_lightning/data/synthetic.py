"""Parametric cartoon-face renderer: the built-in training and evaluation data (nothing to download).

A face is an identity (a fixed parameter vector: head shape, skin tone, hair, eyes, brows, nose,
mouth, ears, marks, glasses/beard, a low-frequency skin texture, a demographic group) seen under
per-sample nuisance (head pose, expression, lighting, background clutter, occluders, blur,
alignment jitter, sensor noise).

How a sample is made:

1. Parameters. Every random number comes from a counter-based hash of (seed, identity) for the
   identity's parameters and of (seed, identity, index) for the nuisance, so a sample depends
   only on those keys, whole batches are drawn with a few vectorised numpy operations, and no
   per-sample random generator has to be built.
2. Geometry. The head is a stack of horizontal elliptic slices (width, front and back depth per
   height) carrying ~30 keypoints (eye centres and corners, brows, nose bridge/tip/wings, lips,
   chin, ears). Keypoints are rotated by yaw, pitch and roll and projected orthographically. For
   each slice the visible arc at the current yaw is found in closed form, which gives the head
   silhouette, the hair region and the skin region below the hairline as polygons that change
   shape correctly with yaw (the far cheek disappears, the nose leaves the outline, the hair
   shows at the back of a profile).
3. Alignment. Like a detector + 5-point aligner, the similarity transform that maps the five
   projected landmarks onto the insightface template is applied to everything, then perturbed by
   a small random similarity (the aligner's error). The returned landmarks are the exact image
   positions of the five keypoints after all of this.
4. Drawing. OpenCV primitives with anti-aliasing and sub-pixel (``shift``) coordinates, back to
   front: background crop, long hair, neck and clothes, far ears, head, hair, skin, texture,
   marks, beard, eyes, brows, mouth, nose, near ears, glasses, occluder. Then blur, lighting
   (gradient, brightness, contrast, colour cast) and sensor noise with a few whole-image cv2
   calls. Backgrounds and noise are crops of banks rendered once per image size.

Difficulty is tuned with :class:`Nuisance` (strength of each nuisance), ``nuisance_scale`` (all
of them at once) and ``identity_scale`` (how different identities look).

Conventions: images are RGB uint8; coordinates are pixels (x right, y down, pixel centres at
integers, as cv2 and the insightface template use). Positive yaw turns the nose towards the
image's right, positive pitch raises it, positive roll tilts the head clockwise in the image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import cv2
import numpy as np

from fr_lightning.data.align import TEMPLATE_112 as ALIGN_TEMPLATE_112

__all__ = ["TEMPLATE_112", "FaceRenderer", "Nuisance", "RenderedBatch"]

#: insightface's 5-point template for 112×112 crops, as float32 for drawing.
TEMPLATE_112 = ALIGN_TEMPLATE_112.astype(np.float32)

_SHIFT = 4  # fractional bits of the fixed-point coordinates handed to cv2
_ONE = float(1 << _SHIFT)
_AA = cv2.LINE_AA

# --------------------------------------------------------------------------------------------
# Counter-based random numbers
# --------------------------------------------------------------------------------------------

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on a uint64 array (wrapping arithmetic is intended)."""
    x = (x ^ (x >> _S30)) * _M1
    x = (x ^ (x >> _S27)) * _M2
    return x ^ (x >> _S31)


def _key(*parts: np.ndarray | int) -> np.ndarray:
    """Hash integer arrays/scalars (broadcast together) into one uint64 key per element."""
    arrays = np.broadcast_arrays(*[np.asarray(p, dtype=np.int64) for p in parts])
    k = np.full(arrays[0].shape, 0x243F6A8885A308D3, dtype=np.uint64)
    for a in arrays:
        k = _mix(k ^ _mix(a.astype(np.uint64) + _GOLDEN))
    return k


class _Draws:
    """Hands out columns of hash-derived uniforms, one row per sample, in a fixed order."""

    def __init__(self, keys: np.ndarray, columns: int) -> None:
        """Args: keys: uint64 [N] sample keys. columns: how many uniforms to make per sample."""
        counters = np.arange(1, columns + 1, dtype=np.uint64) * _GOLDEN
        bits = _mix(keys[:, None] + counters[None, :]) >> _S11
        self._u = (bits.astype(np.float64) + 0.5) * (1.0 / 9007199254740992.0)  # (0, 1)
        self._next = 0

    def u(self, count: int = 0) -> np.ndarray:
        """Uniforms in (0, 1): shape [N] if count == 0 else [N, count]."""
        k = max(count, 1)
        if self._next + k > self._u.shape[1]:
            raise RuntimeError("_Draws ran out of columns; raise its column count")
        out = self._u[:, self._next : self._next + k]
        self._next += k
        return out[:, 0] if count == 0 else out

    def n(self, count: int = 0) -> np.ndarray:
        """Standard normals (Box-Muller, two uniforms each), shape like :meth:`u`."""
        k = max(count, 1)
        u1, u2 = self.u(k), self.u(k)
        z = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)
        return z[:, 0] if count == 0 else z

    def cat(self, cum_probs: np.ndarray) -> np.ndarray:
        """Categorical draw from per-row cumulative probabilities [N, C]."""
        u = self.u()
        return np.minimum((u[:, None] > cum_probs).sum(axis=1), cum_probs.shape[1] - 1)


# --------------------------------------------------------------------------------------------
# Head model (units: pixels of a 112 crop; x right, y down, z towards the camera)
# --------------------------------------------------------------------------------------------

# Head profile: half-width, front depth and back depth of the horizontal slice at each height.
_PROF_Y = np.array([-66, -60, -50, -38, -25, -12, 0, 12, 22, 32, 40, 46, 50], np.float64)
_PROF_W = np.array([0.0, 19, 29, 35, 38.5, 40, 40, 39, 37, 33, 26, 17, 6])
_PROF_F = np.array([-6.0, 18, 31, 38, 41, 42, 41, 42, 41, 40, 38, 34, 27])
_PROF_B = np.array([-6.0, -30, -44, -52, -55, -54, -50, -42, -30, -18, -6, 4, 12])
_HEAD_TOP, _CHIN_Y = -66.0, 50.0
# Bumps that identity parameters scale: jaw width, cheek fullness, chin width.
_BUMP_Y = np.array([-100, 0, 8, 12, 18, 22, 28, 32, 36, 42, 45, 48, 52, 100], np.float64)
_JAW_B = np.array([0, 0, 0, 0, 0, 0.3, 0.8, 1.0, 0.8, 0.3, 0.1, 0, 0, 0])
_CHEEK_B = np.array([0, 0, 0.6, 1.0, 0.8, 0.4, 0.1, 0, 0, 0, 0, 0, 0, 0])
_CHIN_B = np.array([0, 0, 0, 0, 0, 0, 0, 0, 0, 0.3, 0.7, 1.0, 1.0, 1.0])

_EYE_X, _EYE_Y = 17.6, -8.5
_NOSE_Y = 11.7
_MOUTH_X, _MOUTH_Y = 14.6, 32.3
_EAR_Y = 0.0
_N_SKIN, _N_HAIR, _N_HEAD = 16, 14, 18  # slices per polygon
_TEX = 7  # side of the identity texture grid

_GROUP_TONE = np.array([(0.68, 0.95), (0.48, 0.72), (0.28, 0.50), (0.12, 0.34)])
_GROUP_CONTRAST = np.array([1.0, 0.9, 0.78, 0.66])
_SKIN_L = np.array([0.0, 0.3, 0.55, 0.75, 1.0])
_SKIN_RGB = np.array([[52, 34, 26], [112, 74, 54], [178, 128, 95], [222, 178, 146], [250, 224, 206]], np.float64)
_HAIR_RGB = np.array(
    [[22, 18, 16], [58, 38, 26], [112, 76, 46], [205, 170, 105], [150, 68, 34], [160, 158, 155]], np.float64
)
_HAIR_P = np.array(
    [
        [0.20, 0.30, 0.20, 0.18, 0.06, 0.06],
        [0.55, 0.35, 0.05, 0.00, 0.00, 0.05],
        [0.75, 0.20, 0.00, 0.00, 0.00, 0.05],
        [0.85, 0.10, 0.00, 0.00, 0.00, 0.05],
    ]
)
_IRIS_RGB = np.array([[100, 62, 32], [48, 32, 22], [70, 115, 170], [80, 125, 72], [125, 98, 52]], np.float64)
_IRIS_P = np.array(
    [
        [0.35, 0.10, 0.30, 0.12, 0.13],
        [0.55, 0.30, 0.05, 0.03, 0.07],
        [0.40, 0.60, 0.00, 0.00, 0.00],
        [0.30, 0.70, 0.00, 0.00, 0.00],
    ]
)
# Hair styles: bald, short, medium, long, bangs.
_STYLE_P = np.array([0.06, 0.34, 0.25, 0.22, 0.13])
_GLASSES_RGB = np.array([[20, 20, 20], [90, 60, 30], [170, 170, 175], [120, 20, 30]], np.float64)
_MASK_RGB = np.array([[150, 190, 225], [235, 235, 235], [30, 30, 35], [90, 110, 160]], np.float64)


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


@dataclass(frozen=True)
class Nuisance:
    """Strengths of the per-sample nuisance (all multiplied by ``FaceRenderer.nuisance_scale``).

    Standard deviations are in degrees or in pixels of a 112 crop; probabilities are per sample.

    Args:
        yaw_std: yaw spread of non-profile samples.
        pitch_std: pitch spread.
        roll_std: roll spread (mostly removed again by the alignment, as in real crops).
        shift_std: alignment error, translation.
        scale_std: alignment error, log-scale.
        rotation_std: alignment error, in-plane rotation.
        expression: probability scale of smile, open mouth, raised brows and blinks.
        light_std: strength of the directional light gradient.
        brightness_std: log-brightness spread.
        contrast_std: log-contrast spread.
        cast_std: per-channel colour-cast spread (log gain).
        background: how much the cluttered scene shows (0 = plain grey).
        clutter_shapes: mean number of extra shapes drawn over the background crop.
        occluder_prob: probability of sunglasses, a hand, a hat brim, a mask or a bar.
        blur_prob: probability of Gaussian blur.
        blur_max: largest blur sigma (pixels of a 112 crop).
        noise_std: sensor-noise spread (grey levels, half-normal).
    """

    yaw_std: float = 15.0
    pitch_std: float = 7.0
    roll_std: float = 8.0
    shift_std: float = 2.5
    scale_std: float = 0.05
    rotation_std: float = 3.0
    expression: float = 1.0
    light_std: float = 0.45
    brightness_std: float = 0.22
    contrast_std: float = 0.2
    cast_std: float = 0.08
    background: float = 1.0
    clutter_shapes: float = 1.5
    occluder_prob: float = 0.2
    blur_prob: float = 0.3
    blur_max: float = 1.4
    noise_std: float = 6.0


# --------------------------------------------------------------------------------------------
# Background and noise banks (rendered once per image size, shared by all renderers)
# --------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------
# Geometry helpers (vectorised over the batch)
# --------------------------------------------------------------------------------------------


def _rotation(yaw: np.ndarray, pitch: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """Rotation matrices [N, 3, 3] = Rz(roll) · Rx(pitch) · Ry(yaw), angles in degrees."""
    y, p, r = (np.deg2rad(a) for a in (yaw, pitch, roll))
    cy, sy, cp, sp, cr, sr = np.cos(y), np.sin(y), np.cos(p), np.sin(p), np.cos(r), np.sin(r)
    ry = np.zeros((len(y), 3, 3))
    ry[:, 0, 0], ry[:, 0, 2], ry[:, 1, 1], ry[:, 2, 0], ry[:, 2, 2] = cy, sy, 1.0, -sy, cy
    rx = np.zeros_like(ry)
    # Image y points down, so a positive pitch (nose up) moves points with z > 0 to smaller y.
    rx[:, 0, 0], rx[:, 1, 1], rx[:, 1, 2], rx[:, 2, 1], rx[:, 2, 2] = 1.0, cp, -sp, sp, cp
    rz = np.zeros_like(ry)
    rz[:, 0, 0], rz[:, 0, 1], rz[:, 1, 0], rz[:, 1, 1], rz[:, 2, 2] = cr, -sr, sr, cr, 1.0
    return rz @ rx @ ry


def _fixed(z: np.ndarray) -> np.ndarray:
    """Complex image points -> int32 fixed-point (x, y) pairs for cv2's ``shift`` argument."""
    out = np.empty(z.shape + (2,), np.int32)
    out[..., 0] = np.rint(z.real * _ONE)
    out[..., 1] = np.rint(z.imag * _ONE)
    return out


def _smoothstep(t: np.ndarray) -> np.ndarray:
    """Cubic smoothstep of ``t`` clipped to [0, 1]."""
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


class FaceRenderer:
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
    ) -> None:
        if image_size < 16:
            raise ValueError(f"image_size must be >= 16, got {image_size}")
        probs = np.asarray(group_probs, np.float64)
        if probs.shape != (4,) or (probs < 0).any() or probs.sum() <= 0:
            raise ValueError(f"group_probs must be 4 non-negative numbers, got {group_probs}")
        if not 0.0 <= max_yaw <= 89.0:
            raise ValueError(f"max_yaw must be in [0, 89], got {max_yaw}")
        self.seed = int(seed)
        self.image_size = int(image_size)
        self.group_probs = tuple(float(p) for p in probs / probs.sum())
        self.profile_prob = float(profile_prob)
        self.max_yaw = float(max_yaw)
        self.nuisance_scale = float(nuisance_scale)
        self.identity_scale = float(identity_scale)
        self.nuisance = nuisance if nuisance is not None else Nuisance()
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

    def _identity(self, ids: np.ndarray, group: np.ndarray) -> dict[str, np.ndarray]:
        """Identity parameter vectors (vectorised), keyed by (seed, identity) and the group."""
        d = _Draws(_key(self.seed, 1, ids), 160)
        s = self.identity_scale
        p: dict[str, np.ndarray] = {}
        # Head shape.
        p["W"] = 1.0 + 0.045 * s * d.n()
        p["jaw"] = 0.10 * s * d.n()
        p["cheek"] = 0.07 * s * d.n()
        p["chin"] = 0.25 * s * d.n()
        p["chin_len"] = 3.0 * s * d.n()
        p["depth"] = 1.0 + 0.05 * s * d.n()
        p["neck"] = 1.0 + 0.08 * s * d.n()
        # Skin: tone range and feature contrast depend on the group.
        lo, hi = _GROUP_TONE[group, 0], _GROUP_TONE[group, 1]
        tone = lo + (hi - lo) * d.u()
        skin = np.stack([np.interp(tone, _SKIN_L, _SKIN_RGB[:, c]) for c in range(3)], axis=1)
        redness, yellowness = 7.0 * d.n(), 6.0 * d.n()
        skin += np.stack([redness, 0.4 * yellowness, -yellowness], axis=1)
        p["skin"] = np.clip(skin, 20, 252)
        p["contrast"] = _GROUP_CONTRAST[group]
        # Hair.
        hair_cat = d.cat(np.cumsum(_HAIR_P[group], axis=1))
        p["hair"] = np.clip(_HAIR_RGB[hair_cat] * np.exp(0.18 * d.n()[:, None] + 0.04 * d.n(3)), 5, 250)
        p["style"] = d.cat(np.broadcast_to(np.cumsum(_STYLE_P), (len(ids), 5)))
        style = p["style"]
        thick_u = d.u()
        p["hair_t"] = np.select(
            [style == 1, style == 2, style == 3, style == 4],
            [1.5 + 3.5 * thick_u, 3 + 6 * thick_u, 3 + 7 * thick_u, 2.5 + 5 * thick_u],
            0.0,
        )
        hf_n = d.n()
        # Front hairline height: receding for some short styles, low for bangs.
        p["hairline"] = np.select(
            [style == 0, style == 4], [_HEAD_TOP + 2.0, -26.0 + 2.5 * hf_n], -41.0 + 4.0 * s * hf_n
        )
        p["part"] = np.clip(0.15 * d.n(), -0.4, 0.4) * (style != 0)
        p["temple"] = -4.0 + 4.0 * d.n()  # height where hair meets the sideburn
        p["hairline_w"] = np.deg2rad(12.0 + 30.0 * d.u())  # half-angle of the flat top of the hairline
        p["side_arc"] = np.deg2rad(96.0 + 10.0 * d.u())
        p["hair_bottom"] = np.select([style == 1, style == 2], [6.0 + 10 * d.u(), 18.0 + 14 * d.u()], 20.0 + 8 * d.u())
        p["long_len"] = 62.0 + 50.0 * d.u()
        # Eyes.
        p["eye_dx"] = 1.8 * s * d.n()
        p["eye_dy"] = 1.2 * s * d.n()
        p["eye_w"] = 7.0 * (1.0 + 0.1 * s * d.n())
        p["eye_h"] = 3.0 * (1.0 + 0.15 * s * d.n())
        p["eye_tilt"] = 1.2 * s * d.n()  # outer-corner lift in px
        iris_cat = d.cat(np.cumsum(_IRIS_P[group], axis=1))
        p["iris"] = np.clip(_IRIS_RGB[iris_cat] * np.exp(0.15 * d.n()[:, None] + 0.05 * d.n(3)), 5, 250)
        p["iris_r"] = 0.95 + 0.08 * s * d.n()  # relative to the eye height
        # Brows.
        p["brow_t"] = 2.6 * np.exp(0.3 * s * d.n())
        p["brow_angle"] = 2.0 * s * d.n()  # outer end raise in px
        p["brow_arch"] = 0.5 + 2.0 * d.u()
        p["brow_gap"] = 9.0 + 1.5 * s * d.n()
        p["brow_len"] = 1.0 + 0.1 * s * d.n()
        p["brow_dark"] = 0.6 + 0.4 * d.u()
        # Nose.
        p["nose_len"] = 2.0 * s * d.n()
        p["nose_w"] = 1.0 + 0.15 * s * d.n()
        p["nose_p"] = 1.0 + 0.18 * s * d.n()
        # Mouth.
        p["mouth_w"] = 1.0 + 0.09 * s * d.n()
        p["lip_u"] = np.exp(0.3 * s * d.n())
        p["lip_l"] = np.exp(0.3 * s * d.n())
        p["mouth_dy"] = 1.5 * s * d.n()
        lip_n = d.n(2)
        lip = p["skin"] * np.array([0.86, 0.58, 0.60]) + np.array([28.0, 2.0, 8.0])
        lip[:, 0] += 12.0 * lip_n[:, 0]
        lip[:, 1:] += 6.0 * lip_n[:, 1:2]
        p["lip"] = np.clip(p["skin"] + (lip - p["skin"]) * p["contrast"][:, None], 0, 255)
        # Ears.
        p["ear_s"] = 1.0 + 0.12 * s * d.n()
        p["ear_flare"] = np.deg2rad(25.0 + 8.0 * s * d.n())
        p["ear_dy"] = 2.0 * s * d.n()
        # Marks: up to 3 moles and maybe a scar, at identity-fixed places.
        p["n_moles"] = np.floor(d.u() * 4.0 - 0.3).clip(0, 3).astype(np.int64)
        p["mole_xy"] = np.stack([-30 + 60 * d.u(3), -32 + 72 * d.u(3)], axis=2)  # [N, 3, 2]
        p["mole_r"] = 0.8 + 1.1 * d.u(3)
        p["scar"] = d.u() < 0.1
        p["scar_xy"] = np.stack([-26 + 52 * d.u(), -25 + 55 * d.u()], axis=1)
        p["scar_dir"] = np.pi * d.u()
        p["scar_len"] = 5.0 + 7.0 * d.u()
        p["scar_light"] = d.u() < 0.5
        # Accessories / facial hair.
        p["glasses"] = d.u() < 0.12
        p["glasses_rgb"] = _GLASSES_RGB[np.minimum((d.u() * 4).astype(np.int64), 3)]
        p["glasses_round"] = d.u() < 0.5
        p["glasses_s"] = 1.0 + 0.1 * d.n()
        p["beard"] = d.u() < 0.15
        p["beard_top"] = 18.0 + 6.0 * d.u()
        p["beard_den"] = 0.45 + 0.5 * d.u()
        p["moustache"] = p["beard"] | (d.u() < 0.08)
        # Low-frequency skin texture: a 7×7 identity-fixed grid (mostly luminance, a little
        # red-vs-yellow), about ±8 % gain, stretched over the head.
        t = _Draws(_key(self.seed, 4, ids), 2 * 98).n(98).reshape(-1, _TEX, _TEX, 2)
        t = t[..., :1] + 0.3 * t[..., 1:2] * np.array([1.0, -0.3, -1.0])
        p["texture"] = np.clip(128.0 * (1.0 + 0.08 * t), 0, 255).astype(np.uint8)
        return p

    def _nuisance(self, ids: np.ndarray, idx: np.ndarray) -> dict[str, np.ndarray]:
        """Per-sample nuisance parameters, keyed by (seed, identity, index)."""
        d = _Draws(_key(self.seed, 2, ids, idx), 160)
        s, q = self.nuisance_scale, self.nuisance
        n = len(ids)
        p: dict[str, np.ndarray] = {}
        prof = d.u() < self.profile_prob
        mag = self.max_yaw * (0.4 + 0.6 * d.u())
        sign = np.where(d.u() < 0.5, -1.0, 1.0)
        yaw = np.where(prof, sign * mag, np.clip(q.yaw_std * d.n(), -self.max_yaw, self.max_yaw))
        p["yaw"] = s * yaw
        p["pitch"] = np.clip(s * q.pitch_std * d.n(), -30, 30)
        p["roll"] = np.clip(s * q.roll_std * d.n(), -40, 40)
        e = min(1.0, s * q.expression)
        p["smile"] = (d.u() < 0.4 * e) * d.u()
        p["open"] = (d.u() < 0.25 * e) * 5.0 * d.u()
        p["brow_up"] = (d.u() < 0.3 * e) * 3.0 * d.u()
        p["blink"] = (d.u() < 0.05 * e) * (0.5 + 0.5 * d.u())
        # Lighting.
        ang = 2 * np.pi * d.u()
        strength = s * q.light_std * np.abs(d.n())
        bright = np.exp(s * q.brightness_std * d.n())
        contrast = np.exp(s * q.contrast_std * d.n())
        cast = np.exp(s * q.cast_std * d.n(3))
        corners = np.array([[-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0], [1.0, 1.0]])  # (x, y) of a 2x2 map
        grad = 1.0 + strength[:, None] * 0.5 * (
            np.cos(ang)[:, None] * corners[:, 0] + np.sin(ang)[:, None] * corners[:, 1]
        )
        gain = np.clip(grad, 0.15, 3.0)[:, :, None] * (bright * contrast)[:, None, None] * cast[:, None, :]
        p["gain"] = np.clip(128.0 * gain, 0, 255).astype(np.uint8).reshape(n, 2, 2, 3)
        p["offset"] = 128.0 * (1.0 - contrast)
        # Background.
        bg = min(1.0, s * q.background)
        p["bg"] = np.full(n, bg)
        p["scene"] = (d.u() * _N_SCENES).astype(np.int64)
        p["scene_xy"] = (d.u(2) * 2 * self.image_size).astype(np.int64)
        p["scene_flip"] = d.u() < 0.5
        p["bg_alpha"] = bg * (0.45 + 0.5 * d.u())  # weight of the scene against a colour gradient
        lum = 20.0 + 215.0 * d.u(4)  # corner brightness
        tint = 35.0 * d.n(3)  # a shared colour tint
        grad = lum[:, :, None] + tint[:, None, :] + 12.0 * d.n(12).reshape(n, 4, 3)
        p["bg_grad"] = np.clip(128.0 + bg * (grad - 128.0), 0, 255).astype(np.uint8).reshape(n, 2, 2, 3)
        p["n_shapes"] = np.minimum(np.floor(d.u() * 2.0 * s * q.clutter_shapes), 3).astype(np.int64)
        p["shape_u"] = d.u(3 * 6).reshape(n, 3, 6)
        p["clothes"] = 255.0 * d.u(3)
        # Occluders: 0 none, 1 sunglasses, 2 hand, 3 hat brim, 4 mask, 5 bar.
        occ = d.u() < min(1.0, s * q.occluder_prob)
        kind = 1 + np.searchsorted(np.cumsum([0.28, 0.24, 0.18, 0.18, 0.12]), d.u())
        p["occ"] = np.where(occ, np.minimum(kind, 5), 0)
        p["occ_u"] = d.u(6)
        p["occ_rgb"] = 255.0 * d.u(3)
        # Blur and noise.
        blur = d.u() < min(1.0, s * q.blur_prob)
        p["blur"] = blur * (0.4 + (q.blur_max - 0.4) * d.u()) * min(1.0, s) * (self.image_size / 112.0)
        p["noise"] = s * q.noise_std * np.abs(d.n())
        p["noise_xy"] = (d.u(2) * 2 * self.image_size).astype(np.int64)
        # Alignment error.
        p["jit_shift"] = s * q.shift_std * d.n(2)
        p["jit_scale"] = np.exp(s * q.scale_std * d.n())
        p["jit_rot"] = np.deg2rad(s * q.rotation_std * d.n())
        return p

    # ---------------------------------------------------------------------------------------
    # Geometry
    # ---------------------------------------------------------------------------------------

    @staticmethod
    def _profile(y: np.ndarray, idp: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Half-width, centre depth and half-depth of the head slices at canonical heights ``y`` [N, K]."""
        w = np.interp(y, _PROF_Y, _PROF_W)
        mod = (
            1.0
            + idp["jaw"][:, None] * np.interp(y, _BUMP_Y, _JAW_B)
            + idp["cheek"][:, None] * np.interp(y, _BUMP_Y, _CHEEK_B)
            + idp["chin"][:, None] * np.interp(y, _BUMP_Y, _CHIN_B)
        )
        w = w * mod * idp["W"][:, None]
        front = np.interp(y, _PROF_Y, _PROF_F) * idp["depth"][:, None]
        back = np.interp(y, _PROF_Y, _PROF_B) * idp["depth"][:, None]
        return np.maximum(w, 0.5), 0.5 * (front + back), np.maximum(0.5 * (front - back), 0.5)

    @staticmethod
    def _stretch(y: np.ndarray, idp: dict[str, np.ndarray]) -> np.ndarray:
        """Canonical height -> identity height (a longer or shorter lower face)."""
        return y + idp["chin_len"][:, None] * np.clip((y - 5.0) / 45.0, 0.0, 1.0)

    def _surface(
        self, x: np.ndarray, y: np.ndarray, idp: dict[str, np.ndarray], dz: np.ndarray | float = 0.0
    ) -> np.ndarray:
        """3-D points on the face surface at canonical (x, y) [N, M], pushed out by ``dz``; [N, M, 3]."""
        w, c, d = self._profile(y, idp)
        z = c + d * np.sqrt(np.clip(1.0 - (x / w) ** 2, 0.0, 1.0)) + dz
        return np.stack([x, self._stretch(y, idp), z], axis=-1)

    def _facing(self, x: np.ndarray, y: np.ndarray, idp: dict[str, np.ndarray], rot: np.ndarray) -> np.ndarray:
        """z component (towards the camera) of the rotated surface normal at canonical (x, y) [N, M]."""
        w, _, d = self._profile(y, idp)
        sin_t = np.clip(x / w, -1.0, 1.0)
        nx, nz = d * sin_t, w * np.sqrt(1.0 - sin_t**2)
        norm = np.sqrt(nx**2 + nz**2)
        return (rot[:, 2, 0, None] * nx + rot[:, 2, 2, None] * nz) / norm

    def _band(
        self,
        y: np.ndarray,
        w: np.ndarray,
        c: np.ndarray,
        d: np.ndarray,
        lo: np.ndarray | float,
        hi: np.ndarray | float,
        yaw: np.ndarray,
    ) -> np.ndarray:
        """Outline of the visible part of a stack of elliptic slices, as 3-D polygon points [N, 2K, 3].

        Slice k is the ellipse (w sinθ, y, c + d cosθ) restricted to azimuths θ in [lo, hi]. At a
        given yaw, the visible arc of a slice is [θ* − π, θ*] with θ* = atan2(w cos ψ, d sin ψ),
        along which the projected x grows monotonically; so the polygon is the right ends top to
        bottom followed by the left ends bottom to top.
        """
        psi = np.deg2rad(yaw)[:, None]
        theta = np.arctan2(w * np.cos(psi), d * np.sin(psi))
        a = np.maximum(lo, theta - np.pi)
        b = np.maximum(np.minimum(hi, theta), a)
        right = np.stack([w * np.sin(b), y, c + d * np.cos(b)], axis=-1)
        left = np.stack([w * np.sin(a), y, c + d * np.cos(a)], axis=-1)
        return np.concatenate([right, left[:, ::-1]], axis=1)

    def _geometry(self, idp: dict[str, np.ndarray], nup: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Project everything of a batch to image space; returns fixed-point polygons and ellipses."""
        n = len(nup["yaw"])
        S = self.image_size
        yaw = np.clip(nup["yaw"], -89.0, 89.0)
        rot = _rotation(yaw, nup["pitch"], nup["roll"])
        rot_t = rot.transpose(0, 2, 1)
        smile, mopen, brow_up, blink = nup["smile"], nup["open"], nup["brow_up"], nup["blink"]
        g: dict[str, np.ndarray] = {}
        zero = np.zeros(n)

        def col(v: np.ndarray) -> np.ndarray:
            """[N] -> [N, 1] for broadcasting against per-point arrays."""
            return v[:, None]

        # ---- keypoints on the surface (canonical x, y, depth offset) ----
        ex = _EYE_X + idp["eye_dx"]
        ey = _EYE_Y + idp["eye_dy"]
        ew, eh = idp["eye_w"], idp["eye_h"] * (1.0 - blink)
        tilt = idp["eye_tilt"]
        # Eye centres, then corners: L outer, L inner, R inner, R outer.
        eye_x = np.stack([-ex, ex, -ex - ew, -ex + ew, ex - ew, ex + ew], axis=1)
        eye_y = np.stack([ey, ey, ey - tilt, ey, ey, ey - tilt], axis=1)
        eyes3 = self._surface(eye_x, eye_y, idp, -3.0)
        # Mouth: corners L, R; upper outer L-peak, centre, R-peak; inner upper, inner lower;
        # lower outer L, centre, R.
        mw = _MOUTH_X * idp["mouth_w"] * (1.0 + 0.08 * smile)
        my = _MOUTH_Y + idp["mouth_dy"]
        cy = my - 2.5 * smile
        lu, ll = 3.2 * idp["lip_u"], 4.0 * idp["lip_l"]
        mouth_x = np.stack([-mw, mw, -0.38 * mw, zero, 0.38 * mw, zero, zero, -0.5 * mw, zero, 0.5 * mw], axis=1)
        mouth_y = np.stack(
            [
                cy,
                cy,
                my - lu,
                my - 0.75 * lu,
                my - lu,
                my - 0.2,
                my + 0.2 + mopen,
                my + 0.75 * ll + mopen,
                my + ll + mopen,
                my + 0.75 * ll + mopen,
            ],
            axis=1,
        )
        mouth_dz = np.array([-1.5, -1.5, 1.0, 1.2, 1.0, 0.5, 0.5, 1.0, 1.5, 1.0])
        mouth3 = self._surface(mouth_x, mouth_y, idp, mouth_dz)
        # Nose: bridge top, ridge L, ridge R, tip, wing L, wing R, subnasale.
        nl = _NOSE_Y + idp["nose_len"]
        nw = 6.5 * idp["nose_w"]
        npro = 15.0 * idp["nose_p"]
        nose_x = np.stack([zero, -2.5 + zero, 2.5 + zero, zero, -nw, nw, zero], axis=1)
        nose_y = np.stack([ey - 1.0, 0.5 * (ey + nl), 0.5 * (ey + nl), nl, nl - 1.2, nl - 1.2, nl + 3.8], axis=1)
        nose_dz = np.stack([zero, 0.55 * npro, 0.55 * npro, npro, 0.25 * npro, 0.25 * npro, 0.3 * npro], axis=1)
        nose_dz[:, 0] = 0.5
        nose3 = self._surface(nose_x, nose_y, idp, nose_dz)
        # Brows: inner, mid, outer per side, each with an upper and a lower edge point.
        bl = idp["brow_len"]
        by = ey - idp["brow_gap"] - brow_up
        bt = idp["brow_t"]
        arch, bang = idp["brow_arch"], idp["brow_angle"]
        bx = np.stack([ex - 9.0 * bl, ex + 0.5, ex + 10.5 * bl], axis=1)  # inner, mid, outer (right side)
        byy = np.stack([by, by - arch, by - bang], axis=1)
        bth = np.stack([bt, 0.9 * bt, 0.5 * bt], axis=1)
        brow_x = np.concatenate(
            [-bx, -bx[:, ::-1], bx, bx[:, ::-1]], axis=1
        )  # L upper, L lower rev, R upper, R lower rev
        brow_y = np.concatenate(
            [byy - bth / 2, (byy + bth / 2)[:, ::-1], byy - bth / 2, (byy + bth / 2)[:, ::-1]], axis=1
        )
        brows3 = self._surface(brow_x, brow_y, idp, 1.0)
        # A face mask (occluder) from the cheeks over the nose to the chin.
        mask_x = np.broadcast_to(np.array([-33.0, -16, -5, 0, 5, 16, 33, 31, 20, 0, -20, -31]), (n, 12)) * col(idp["W"])
        mask_y = np.broadcast_to(np.array([6.0, 2, 0, 0, 0, 2, 6, 28, 42, 52, 42, 28]), (n, 12))
        over_nose = np.array([0.0, 0, 6, 7, 6, 0, 0, 0, 0, 0, 0, 0])  # the mask drapes over the nose
        mask_dz = np.array([1.0, 3, 4, 4, 4, 3, 1, 1, 1, 1, 1, 1]) + over_nose * col(idp["nose_p"])

        # ---- rotation + alignment ----
        lm3 = np.stack([eyes3[:, 0], eyes3[:, 1], nose3[:, 3], mouth3[:, 0], mouth3[:, 1]], axis=1)
        lm_r = lm3 @ rot_t
        q = lm_r[..., 0] + 1j * lm_r[..., 1]
        tmpl = self._template[:, 0] + 1j * self._template[:, 1]
        qc = q - q.mean(axis=1, keepdims=True)
        tc = tmpl - tmpl.mean()
        a_sim = (np.conj(qc) * tc).sum(axis=1) / (np.abs(qc) ** 2).sum(axis=1)
        t_sim = tmpl.mean() - a_sim * q.mean(axis=1)
        # The aligner's error: a small random similarity about the image centre.
        centre = (S - 1) / 2.0 * (1 + 1j)
        jit = nup["jit_scale"] * np.exp(1j * nup["jit_rot"])
        shift = (nup["jit_shift"][:, 0] + 1j * nup["jit_shift"][:, 1]) * (S / 112.0)
        A = jit * a_sim
        T = jit * (t_sim - centre) + centre + shift
        g["scale"] = np.abs(A)

        def project(p3: np.ndarray) -> np.ndarray:
            """Head-frame points [N, M, 3] -> complex image positions [N, M]."""
            r = p3 @ rot_t
            return A[:, None] * (r[..., 0] + 1j * r[..., 1]) + T[:, None]

        lm = project(lm3)
        g["landmarks"] = np.stack([lm.real, lm.imag], axis=-1).astype(np.float32)

        # ---- polygons ----
        # Head silhouette.
        t = np.linspace(0.0, 1.0, _N_HEAD)
        yh = _HEAD_TOP + (_CHIN_Y - _HEAD_TOP) * np.sin(0.5 * np.pi * t) ** 1.3
        yh = np.broadcast_to(yh, (n, _N_HEAD))
        w, c, d = self._profile(yh, idp)
        g["head"] = _fixed(project(self._band(self._stretch(yh, idp), w, c, d, -np.pi, np.pi, yaw)))
        # Skin below the hairline: the arc of skin grows from the flat top of the hairline to the
        # sideburns.
        top = idp["hairline"]
        ys = col(top) + col(_CHIN_Y - top) * (1.0 - np.cos(0.5 * np.pi * np.linspace(0, 1, _N_SKIN)))
        w, c, d = self._profile(ys, idp)
        rise = _smoothstep((ys - col(top)) / np.maximum(col(idp["temple"] - top), 1.0))
        arc = col(idp["hairline_w"]) + (col(idp["side_arc"]) - col(idp["hairline_w"])) * rise
        bald = col(idp["style"] == 0)
        arc = np.where(bald, np.pi, arc)
        part = col(idp["part"])
        g["skin"] = _fixed(
            project(
                self._band(
                    self._stretch(ys, idp),
                    w,
                    c,
                    d,
                    -np.minimum(arc * (1 + part), np.pi),
                    np.minimum(arc * (1 - part), np.pi),
                    yaw,
                )
            )
        )
        # Hair: the head scaled up by the hair thickness, down to the hair's lower edge.
        ht = idp["hair_t"]
        yb = np.maximum(idp["hair_bottom"], idp["temple"] + 2.0)
        yhair = _HEAD_TOP + col(yb - _HEAD_TOP) * np.sin(0.5 * np.pi * np.linspace(0, 1, _N_HAIR)) ** 1.3
        w, c, d = self._profile(yhair, idp)
        grow = 1.0 + col(ht) / 42.0
        pivot_y, pivot_z = -8.0, -6.0
        g["hair"] = _fixed(
            project(
                self._band(
                    pivot_y + (yhair - pivot_y) * grow,
                    w * grow,
                    pivot_z + (c - pivot_z) * grow,
                    d * grow,
                    -np.pi,
                    np.pi,
                    yaw,
                )
            )
        )
        # Long hair hanging behind the head and shoulders.
        yl = -20.0 + col(idp["long_len"] + 20.0) * np.linspace(0, 1, 8)
        wl = col(idp["W"]) * (41.0 + col(ht)) + 0.15 * (yl + 20.0)
        g["long"] = _fixed(
            project(self._band(yl, wl, np.full_like(wl, -22.0), np.full_like(wl, 24.0), -np.pi, np.pi, yaw))
        )
        # Neck and clothes.
        yn = np.broadcast_to(np.linspace(15.0, 150.0, 6), (n, 6))
        wn = np.broadcast_to(21.0 * col(idp["neck"] * idp["W"]), yn.shape)
        g["neck"] = _fixed(
            project(self._band(yn, wn, np.full_like(wn, -12.0), np.full_like(wn, 20.0), -np.pi, np.pi, 0.6 * yaw))
        )
        yc = np.broadcast_to(np.array([86.0, 92.0, 100.0, 115.0, 140.0, 190.0]), (n, 6))
        wc = np.array([24.0, 45.0, 62.0, 76.0, 84.0, 88.0]) * col(idp["W"])
        g["clothes"] = _fixed(
            project(self._band(yc, wc, np.full_like(wc, -14.0), np.full_like(wc, 30.0), -np.pi, np.pi, 0.3 * yaw))
        )
        # Beard: lower face below the beard line (sideburn to chin); moustache above the lip.
        yd = col(idp["beard_top"]) + col(_CHIN_Y + 1.5 - idp["beard_top"]) * np.linspace(0, 1, 8)
        w, c, d = self._profile(yd, idp)
        g["beard"] = _fixed(project(self._band(self._stretch(yd, idp), w + 1.0, c, d + 1.0, -1.9, 1.9, yaw)))
        must_x = np.stack([-1.1 * mw, -0.5 * mw, zero, 0.5 * mw, 1.1 * mw, 0.5 * mw, zero, -0.5 * mw], axis=1)
        must_y = np.stack(
            [cy + 1.5, my - lu - 2.0, my - lu - 1.6, my - lu - 2.0, cy + 1.5, my - lu - 0.5, my - lu, my - lu - 0.5],
            axis=1,
        )
        g["moustache"] = _fixed(project(self._surface(must_x, must_y, idp, 1.5)))
        # Features.
        eyes = project(eyes3)
        g["eye_c"] = _fixed(eyes[:, 0:2])
        corner_vec = np.stack([eyes[:, 3] - eyes[:, 2], eyes[:, 5] - eyes[:, 4]], axis=1)  # inner-outer, per eye
        g["eye_angle"] = np.rad2deg(np.angle(corner_vec))
        # Half-width as seen; the eye's height shrinks with pitch a little, ignored.
        sc = col(g["scale"])
        g["eye_ax"] = np.stack([0.5 * np.abs(corner_vec), np.broadcast_to(sc * col(eh), (n, 2))], axis=-1)
        fore = np.clip(np.abs(corner_vec) / (2.0 * col(ew) * sc), 0.0, 1.0)
        iris_r = sc * col(idp["iris_r"] * eh)
        g["iris_ax"] = np.stack([iris_r * fore, np.broadcast_to(iris_r, fore.shape)], axis=-1)
        g["eye_vis"] = self._facing(eye_x[:, :2], eye_y[:, :2], idp, rot) * np.minimum(1.0, fore * 2.0)
        g["brows"] = _fixed(project(brows3)).reshape(n, 2, 6, 2)
        mouth = project(mouth3)
        g["mouth"] = _fixed(mouth)
        nose = project(nose3)
        g["nose"] = _fixed(nose)
        g["nose_vis"] = self._facing(nose_x[:, 4:6], nose_y[:, 4:6], idp, rot)
        # Ears: a disc on each side, normal pointing sideways and a little forward.
        ear_y = _EAR_Y + idp["ear_dy"]
        w_e, c_e, _ = self._profile(col(ear_y), idp)
        fl = idp["ear_flare"]
        ears3 = np.stack(
            [
                np.concatenate([-(w_e + 1.5), w_e + 1.5], 1),
                np.broadcast_to(col(ear_y), (n, 2)),
                np.broadcast_to(c_e - 4.0, (n, 2)),
            ],
            axis=-1,
        )
        ear_n = np.stack(
            [np.stack([-np.cos(fl), np.cos(fl)], 1), np.zeros((n, 2)), np.stack([np.sin(fl), np.sin(fl)], 1)], axis=-1
        )
        ear_face = (ear_n @ rot_t)[..., 2]
        g["ear_c"] = _fixed(project(ears3))
        es = idp["ear_s"] * g["scale"]
        g["ear_ax"] = np.stack(
            [col(es) * (1.5 + 5.5 * np.abs(ear_face)), np.broadcast_to(col(es) * 10.5, (n, 2))], axis=-1
        )
        g["ear_face"] = ear_face
        # In-plane angle of the head; pitch and roll barely tilt the ears, so they are ignored.
        g["head_angle"] = np.rad2deg(np.angle(A))
        # Marks.
        mxy = idp["mole_xy"]
        g["mole_c"] = _fixed(project(self._surface(mxy[..., 0], mxy[..., 1], idp, 0.3)))
        g["mole_vis"] = self._facing(mxy[..., 0], mxy[..., 1], idp, rot)
        sxy = idp["scar_xy"]
        half = 0.5 * idp["scar_len"]
        scar_x = np.stack([sxy[:, 0] - half * np.cos(idp["scar_dir"]), sxy[:, 0] + half * np.cos(idp["scar_dir"])], 1)
        scar_y = np.stack([sxy[:, 1] - half * np.sin(idp["scar_dir"]), sxy[:, 1] + half * np.sin(idp["scar_dir"])], 1)
        g["scar"] = _fixed(project(self._surface(scar_x, scar_y, idp, 0.3)))
        g["scar_vis"] = self._facing(scar_x, scar_y, idp, rot).min(axis=1)
        g["mask"] = _fixed(project(self._surface(mask_x, mask_y, idp, mask_dz)))
        # Texture box: the face-centred area the identity texture is stretched over.
        tc_ = project(self._surface(np.zeros((n, 1)), np.full((n, 1), -8.0), idp, -20.0))[:, 0]
        cos_y = np.cos(np.deg2rad(yaw))
        # Large enough to cover head and hair in any pose, so no edge of it ever shows.
        g["tex_box"] = np.stack(
            [tc_.real, tc_.imag, g["scale"] * 80.0 * np.maximum(cos_y, 0.75), g["scale"] * 90.0], axis=1
        )
        return g

    # ---------------------------------------------------------------------------------------
    # Drawing
    # ---------------------------------------------------------------------------------------

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
        nup = self._nuisance(ids, idx)
        if yaw is not None:
            nup["yaw"] = np.broadcast_to(np.asarray(yaw, np.float64), ids.shape).copy()
        g = self._geometry(idp, nup)
        self._draw_batch(images, idp, nup, g)
        pose = np.stack([nup["yaw"], nup["pitch"], nup["roll"]], axis=1).astype(np.float32)
        return RenderedBatch(images=images, labels=ids, landmarks=g["landmarks"], pose=pose, group=groups)

    def _draw_batch(
        self, images: np.ndarray, idp: dict[str, np.ndarray], nup: dict[str, np.ndarray], g: dict[str, np.ndarray]
    ) -> None:
        """Draw every sample of a batch into ``images`` (in place)."""
        S = self.image_size
        px = S / 112.0
        n = len(images)
        # Colours (float RGB lists; cv2 takes them as Scalars).
        skin = idp["skin"]
        contrast = idp["contrast"][:, None]
        hair = idp["hair"]
        dark = np.array([30.0, 22.0, 22.0])
        skin_l = skin.tolist()
        hair_l = hair.tolist()
        long_l = (hair * 0.8).tolist()
        neck_l = (skin * 0.82).tolist()
        ear_l = np.clip(skin * np.array([0.97, 0.88, 0.86]), 0, 255).tolist()
        ear_in_l = (skin * 0.7).tolist()
        nose_l = (skin * 0.93).tolist()
        nose_line_l = (skin * (1.0 - 0.3 * contrast)).tolist()
        nostril_l = (skin * (1.0 - 0.6 * contrast)).tolist()
        lid_l = (skin + (dark - skin) * (0.2 + 0.7 * contrast)).tolist()
        brow_l = (
            skin + (hair * 0.85 - skin) * np.clip(idp["brow_dark"][:, None] * (0.5 + 0.5 * contrast), 0, 1)
        ).tolist()
        sclera_l = np.clip(235.0 - 25.0 * (1.0 - contrast), 0, 255).repeat(3, 1).tolist()
        iris_l = idp["iris"].tolist()
        lip_l = idp["lip"].tolist()
        lip_u_l = (idp["lip"] * 0.9).tolist()
        mole_l = (skin * 0.45).tolist()
        scar_l = np.where(idp["scar_light"][:, None], np.minimum(skin * 1.15 + 10, 255), skin * 0.72).tolist()
        beard_l = (skin + (hair * 0.9 - skin) * idp["beard_den"][:, None]).tolist()
        glasses_l = idp["glasses_rgb"].tolist()
        clothes_l = nup["clothes"].tolist()
        occ_l = nup["occ_rgb"].tolist()
        # Geometry as Python lists (indexing lists is much cheaper than numpy scalars).
        eye_c = g["eye_c"].tolist()
        eye_ax = _fixed_real(g["eye_ax"]).tolist()
        iris_ax = _fixed_real(g["iris_ax"]).tolist()
        eye_angle = g["eye_angle"].tolist()
        eye_vis = g["eye_vis"].tolist()
        ear_c = g["ear_c"].tolist()
        ear_ax = _fixed_real(g["ear_ax"]).tolist()
        ear_in_ax = _fixed_real(g["ear_ax"] * np.array([0.55, 0.7])).tolist()
        ear_face = g["ear_face"].tolist()
        ear_angle = g["head_angle"].tolist()
        nose_vis = g["nose_vis"].tolist()
        mole_c = g["mole_c"].tolist()
        mole_r = _fixed_real(idp["mole_r"] * g["scale"][:, None]).tolist()
        mole_vis = g["mole_vis"].tolist()
        n_moles = idp["n_moles"].tolist()
        scar = idp["scar"].tolist()
        scar_vis = g["scar_vis"].tolist()
        scar_pts = g["scar"].tolist()
        style = idp["style"].tolist()
        beard = idp["beard"].tolist()
        moustache = idp["moustache"].tolist()
        glasses = idp["glasses"].tolist()
        glasses_round = idp["glasses_round"].tolist()
        gl_ax = _fixed_real(
            np.stack([11.0 * idp["glasses_s"], np.where(idp["glasses_round"], 9.5, 7.0) * idp["glasses_s"]], 1)
            * g["scale"][:, None]
        ).tolist()
        occ = nup["occ"].tolist()
        blur = nup["blur"].tolist()
        noise = nup["noise"].tolist()
        bg = nup["bg"].tolist()
        scene = nup["scene"].tolist()
        scene_xy = nup["scene_xy"].tolist()
        scene_flip = nup["scene_flip"].tolist()
        bg_alpha = nup["bg_alpha"].tolist()
        n_shapes = nup["n_shapes"].tolist()
        noise_xy = nup["noise_xy"].tolist()
        offset = nup["offset"].tolist()
        tex_box = g["tex_box"].tolist()
        lid_t = max(1, int(round(1.3 * px)))
        line_t = max(1, int(round(1.0 * px)))
        head, skin_p, hair_p, long_p = g["head"], g["skin"], g["hair"], g["long"]
        neck_p, clothes_p, beard_p, must_p = g["neck"], g["clothes"], g["beard"], g["moustache"]
        brows, mouth, nose, face_mask = g["brows"], g["mouth"], g["nose"], g["mask"]
        mask = np.zeros((S, S), np.uint8)
        scenes, noise_bank = _scene_bank(S), _noise_bank(S)
        gain_maps, bg_grads = nup["gain"], nup["bg_grad"]
        shape_u, mouth_open, textures = nup["shape_u"].tolist(), nup["open"].tolist(), idp["texture"]
        for k in range(n):
            img = images[k]
            # Background: a crop of a cluttered scene blended with a colour gradient.
            if bg[k] > 0.0:
                ox, oy = scene_xy[k]
                crop = scenes[scene[k], oy : oy + S, ox : ox + S]
                img[:] = crop[:, ::-1] if scene_flip[k] else crop
                grad = cv2.resize(bg_grads[k], (S, S), interpolation=cv2.INTER_LINEAR)
                a = bg_alpha[k]
                cv2.addWeighted(img, a, grad, 1.0 - a, 0.0, dst=img)
                for j in range(n_shapes[k]):
                    self._clutter(img, shape_u[k][j])
            else:
                img[:] = 128
            st = style[k]
            if st == 3:
                cv2.fillPoly(img, [long_p[k]], long_l[k], _AA, _SHIFT)
            cv2.fillPoly(img, [neck_p[k]], neck_l[k], _AA, _SHIFT)
            cv2.fillPoly(img, [clothes_p[k]], clothes_l[k], _AA, _SHIFT)
            # Ears that face away are drawn behind the head (only the part sticking out shows).
            for e in (0, 1):
                if ear_face[k][e] < 0.3:
                    cv2.ellipse(img, ear_c[k][e], ear_ax[k][e], ear_angle[k], 0, 360, ear_l[k], -1, _AA, _SHIFT)
            cv2.fillPoly(img, [head[k]], skin_l[k], _AA, _SHIFT)
            if st != 0:
                cv2.fillPoly(img, [hair_p[k]], hair_l[k], _AA, _SHIFT)
                cv2.fillPoly(img, [skin_p[k]], skin_l[k], _AA, _SHIFT)
            # Identity texture over head and hair.
            mask[:] = 0
            cv2.fillPoly(mask, [head[k]], 255, cv2.LINE_8, _SHIFT)
            if st != 0:
                cv2.fillPoly(mask, [hair_p[k]], 255, cv2.LINE_8, _SHIFT)
            self._texture(img, mask, textures[k], tex_box[k])
            # Marks.
            for m in range(n_moles[k]):
                if mole_vis[k][m] > 0.25:
                    cv2.ellipse(
                        img, mole_c[k][m], (mole_r[k][m], mole_r[k][m]), 0.0, 0, 360, mole_l[k], -1, _AA, _SHIFT
                    )
            if scar[k] and scar_vis[k] > 0.2:
                cv2.line(img, scar_pts[k][0], scar_pts[k][1], scar_l[k], line_t, _AA, _SHIFT)
            if beard[k]:
                cv2.fillPoly(img, [beard_p[k]], beard_l[k], _AA, _SHIFT)
            if moustache[k]:
                cv2.fillPoly(img, [must_p[k]], beard_l[k], _AA, _SHIFT)
            # Eyes and brows (far side first).
            order = (0, 1) if ear_face[k][0] < ear_face[k][1] else (1, 0)
            for e in order:
                if eye_vis[k][e] > 0.08:
                    c, ax, ang = eye_c[k][e], eye_ax[k][e], eye_angle[k][e]
                    cv2.ellipse(img, c, ax, ang, 0, 360, sclera_l[k], -1, _AA, _SHIFT)
                    if ax[1] > 0.9 * _ONE * px:
                        cv2.ellipse(img, c, iris_ax[k][e], ang, 0, 360, iris_l[k], -1, _AA, _SHIFT)
                        pax = iris_ax[k][e]
                        cv2.ellipse(
                            img, c, (pax[0] // 2, pax[1] // 2), ang, 0, 360, (12.0, 10.0, 10.0), -1, _AA, _SHIFT
                        )
                    cv2.ellipse(img, c, ax, ang, 180, 360, lid_l[k], lid_t, _AA, _SHIFT)
                    cv2.fillPoly(img, [brows[k, e]], brow_l[k], _AA, _SHIFT)
            # Mouth.
            mk = mouth[k]
            if mouth_open[k] > 0.6:
                cv2.fillPoly(img, [mk[[0, 5, 1, 6]]], (70.0, 25.0, 30.0), _AA, _SHIFT)
            cv2.fillPoly(img, [mk[[0, 2, 3, 4, 1, 5]]], lip_u_l[k], _AA, _SHIFT)
            cv2.fillPoly(img, [mk[[0, 6, 1, 9, 8, 7]]], lip_l[k], _AA, _SHIFT)
            # Nose: shaded hull (shows as a bump on profiles), nostrils, a ridge line when turned.
            nk = nose[k]
            cv2.fillPoly(img, [cv2.convexHull(nk)], nose_l[k], _AA, _SHIFT)
            for e in (0, 1):
                if nose_vis[k][e] > 0.2:
                    p = nk[4 + e]
                    q = nk[6]
                    cv2.line(
                        img,
                        ((2 * p[0] + q[0]) // 3, (2 * p[1] + q[1]) // 3),
                        ((p[0] + 2 * q[0]) // 3, (p[1] + 2 * q[1]) // 3),
                        nostril_l[k],
                        lid_t,
                        _AA,
                        _SHIFT,
                    )
            far = 0 if ear_face[k][0] < ear_face[k][1] else 1
            cv2.line(img, nk[0].tolist(), nk[1 + far].tolist(), nose_line_l[k], line_t, _AA, _SHIFT)
            cv2.line(img, nk[1 + far].tolist(), nk[3].tolist(), nose_line_l[k], line_t, _AA, _SHIFT)
            # Ears facing the camera are drawn on top.
            for e in (0, 1):
                if ear_face[k][e] >= 0.3:
                    cv2.ellipse(img, ear_c[k][e], ear_ax[k][e], ear_angle[k], 0, 360, ear_l[k], -1, _AA, _SHIFT)
                    cv2.ellipse(img, ear_c[k][e], ear_in_ax[k][e], ear_angle[k], 0, 360, ear_in_l[k], -1, _AA, _SHIFT)
            if glasses[k]:
                for e in (0, 1):
                    if eye_vis[k][e] > 0.08:
                        cv2.ellipse(
                            img, eye_c[k][e], gl_ax[k], eye_angle[k][e], 0, 360, glasses_l[k], line_t, _AA, _SHIFT
                        )
            if occ[k]:
                self._occluder(img, occ[k], nup["occ_u"][k], occ_l[k], eye_c[k], face_mask[k], g["scale"][k])
            # Optics and sensor: blur, lighting (gain map incl. contrast and cast), noise.
            if blur[k] > 0.25:
                ks = 2 * min(3, int(2.5 * blur[k] + 0.5)) + 1
                cv2.GaussianBlur(img, (ks, ks), blur[k], dst=img)
            gain = cv2.resize(gain_maps[k], (S, S), interpolation=cv2.INTER_LINEAR)
            cv2.multiply(img, gain, dst=img, scale=1.0 / 128.0)
            nx, ny = noise_xy[k]
            w = noise[k] / _NOISE_STD
            cv2.addWeighted(img, 1.0, noise_bank[ny : ny + S, nx : nx + S], w, offset[k] - 128.0 * w, dst=img)

    def _texture(self, img: np.ndarray, mask: np.ndarray, grid: np.ndarray, box: list[float]) -> None:
        """Multiply the masked head area by the identity's texture grid stretched over ``box``."""
        S = self.image_size
        cx, cy, hw, hh = box
        x0, y0 = int(cx - hw), int(cy - hh)
        w, h = max(2, int(2 * hw)), max(2, int(2 * hh))
        tex = cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
        ax0, ay0, ax1, ay1 = max(0, x0), max(0, y0), min(S, x0 + w), min(S, y0 + h)
        if ax1 <= ax0 or ay1 <= ay0:
            return
        region = img[ay0:ay1, ax0:ax1]
        mod = cv2.multiply(region, tex[ay0 - y0 : ay1 - y0, ax0 - x0 : ax1 - x0], scale=1.0 / 128.0)
        cv2.copyTo(mod, mask[ay0:ay1, ax0:ax1], region)

    def _clutter(self, img: np.ndarray, u: list[float]) -> None:
        """Draw one random shape (from six uniforms) on the background."""
        S = self.image_size
        kind, x, y, size, hue, ang = u
        lum = 30.0 + 190.0 * ((hue * 7.31) % 1.0)
        col = (lum + 60.0 * (hue - 0.5), lum + 60.0 * (((hue * 3.77) % 1.0) - 0.5), lum - 60.0 * (hue - 0.5))
        cx, cy = int(x * S), int(y * S)
        r = int((0.05 + 0.25 * size) * S)
        if kind < 0.4:
            cv2.circle(img, (cx, cy), r, col, -1, _AA)
        elif kind < 0.8:
            cv2.rectangle(img, (cx - r, cy - r // 2), (cx + r, cy + r), col, -1)
        else:
            dx, dy = int(S * math.cos(6.28 * ang)), int(S * math.sin(6.28 * ang))
            cv2.line(img, (cx - dx, cy - dy), (cx + dx, cy + dy), col, max(1, r // 4), _AA)

    def _occluder(
        self,
        img: np.ndarray,
        kind: int,
        u: np.ndarray,
        col: list[float],
        eye_c: list[list[int]],
        face_mask: np.ndarray,
        scale: float,
    ) -> None:
        """Draw an occluder: 1 sunglasses, 2 hand, 3 hat brim, 4 mask, 5 bar."""
        S = self.image_size
        u0, u1, u2, u3, u4, u5 = u.tolist()
        f = scale * _ONE
        if kind == 1:
            tint = (20.0 + 40.0 * u0, 20.0 + 30.0 * u1, 25.0 + 40.0 * u2)
            ax = (int(11.5 * f), int(8.0 * f))
            for c in eye_c:
                cv2.ellipse(img, c, ax, 0.0, 0, 360, tint, -1, _AA, _SHIFT)
            cv2.line(img, eye_c[0], eye_c[1], tint, max(1, int(2 * scale)), _AA, _SHIFT)
        elif kind == 2:
            # A hand: palm plus fingers, skin of a random tone, over the lower face.
            tone = (
                np.interp(u3, _SKIN_L, _SKIN_RGB[:, 0]),
                np.interp(u3, _SKIN_L, _SKIN_RGB[:, 1]),
                np.interp(u3, _SKIN_L, _SKIN_RGB[:, 2]),
            )
            tone = tuple(float(t) for t in tone)
            cx, cy = (0.2 + 0.6 * u0) * S, (0.55 + 0.4 * u1) * S
            ang = -60.0 + 120.0 * u2
            r = 16.0 * scale
            cv2.ellipse(
                img,
                (int(cx * _ONE), int(cy * _ONE)),
                (int(r * _ONE), int(1.2 * r * _ONE)),
                ang,
                0,
                360,
                tone,
                -1,
                _AA,
                _SHIFT,
            )
            t = math.radians(ang - 90.0)
            for j in range(4):
                off = (j - 1.5) * 0.55 * r
                fx = cx + off * math.cos(t + math.pi / 2) + 1.5 * r * math.cos(t)
                fy = cy + off * math.sin(t + math.pi / 2) + 1.5 * r * math.sin(t)
                cv2.ellipse(
                    img,
                    (int(fx * _ONE), int(fy * _ONE)),
                    (int(0.25 * r * _ONE), int(0.8 * r * _ONE)),
                    ang,
                    0,
                    360,
                    tone,
                    -1,
                    _AA,
                    _SHIFT,
                )
        elif kind == 3:
            # A hat brim across the forehead, its lower edge between hairline and brows.
            y = (0.12 + 0.22 * u0) * S
            tilt = (u1 - 0.5) * 0.25 * S
            pts = (
                np.array([[-0.2 * S, -0.2 * S], [1.2 * S, -0.2 * S], [1.2 * S, y + tilt], [-0.2 * S, y - tilt]]) * _ONE
            )
            cv2.fillPoly(img, [pts.astype(np.int32)], col, _AA, _SHIFT)
        elif kind == 4:
            # A face mask from the cheeks over the nose to the chin.
            mc = _MASK_RGB[min(3, int(4 * u0))].tolist()
            cv2.fillPoly(img, [cv2.convexHull(face_mask)], mc, _AA, _SHIFT)
        else:
            # A bar (microphone, pole, another person's arm) across the image.
            x0, y0 = u0 * S, u1 * S
            a = math.pi * u2
            dx, dy = S * math.cos(a), S * math.sin(a)
            cv2.line(
                img,
                (int((x0 - dx) * _ONE), int((y0 - dy) * _ONE)),
                (int((x0 + dx) * _ONE), int((y0 + dy) * _ONE)),
                col,
                max(1, int((4 + 8 * u3) * S / 112)),
                _AA,
                _SHIFT,
            )


def _fixed_real(x: np.ndarray) -> np.ndarray:
    """Real lengths -> non-negative int32 fixed point."""
    return np.maximum(np.rint(x * _ONE), 0).astype(np.int32)
