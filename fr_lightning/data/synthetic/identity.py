"""Identity parameters: the fixed look of each identity, keyed by (seed, identity)."""

from __future__ import annotations

import numpy as np

from fr_lightning.data.synthetic.constants import (
    _GLASSES_RGB,
    _GROUP_CONTRAST,
    _GROUP_TONE,
    _HAIR_P,
    _HAIR_RGB,
    _HEAD_TOP,
    _IRIS_P,
    _IRIS_RGB,
    _SKIN_L,
    _SKIN_RGB,
    _STYLE_P,
    _TEX,
)
from fr_lightning.data.synthetic.rng import _Draws, _key


class IdentityMixin:
    """Draws identity parameter vectors for :class:`FaceRenderer`."""

    seed: int
    identity_scale: float

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
