"""Per-sample nuisance: its strengths (:class:`Nuisance`) and its parameters, keyed by (seed, identity, index)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fr_lightning.data.synthetic.banks import _N_SCENES
from fr_lightning.data.synthetic.rng import _Draws, _key


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


class NuisanceMixin:
    """Draws per-sample nuisance parameters for :class:`FaceRenderer`."""

    seed: int
    image_size: int
    profile_prob: float
    max_yaw: float
    nuisance_scale: float
    nuisance: Nuisance

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
