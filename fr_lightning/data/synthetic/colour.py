"""Per-sample colour variation within an identity (the ``colour_jitter`` option of the renderer).

Real photographs of one person differ in skin, hair and eye colour as much as two people do
once white balance, exposure and tone mapping change; a colour histogram is then no identity
cue. ``colour_jitter`` in [0, 1] blends each identity's skin, hair and iris colour towards a
colour drawn per sample (keyed by (seed, identity, index), a stream of its own so the default
rendering is unchanged): 0 keeps the identity's colours, 1 replaces them, leaving geometry,
texture and marks (shape and fine detail) as the identity cues.
"""

from __future__ import annotations

import numpy as np

from fr_lightning.data.synthetic.constants import _HAIR_RGB, _IRIS_RGB, _SKIN_L, _SKIN_RGB
from fr_lightning.data.synthetic.rng import _Draws, _key

#: Stream id of the colour-jitter draws (identity draws use 1, nuisance 2, group 3, texture 4).
_STREAM = 5


def jitter_colours(
    idp: dict[str, np.ndarray], seed: int, ids: np.ndarray, idx: np.ndarray, amount: float
) -> dict[str, np.ndarray]:
    """Return ``idp`` with skin, lip, hair and iris colours blended towards per-sample colours."""
    d = _Draws(_key(seed, _STREAM, ids, idx), 24)
    a = float(amount)
    out = dict(idp)
    # Skin: a tone anywhere in the range of all groups, with its own red/yellow shift.
    tone = 0.12 + 0.83 * d.u()
    skin = np.stack([np.interp(tone, _SKIN_L, _SKIN_RGB[:, c]) for c in range(3)], axis=1)
    redness, yellowness = 7.0 * d.n(), 6.0 * d.n()
    skin += np.stack([redness, 0.4 * yellowness, -yellowness], axis=1)
    new_skin = np.clip((1.0 - a) * idp["skin"] + a * skin, 20, 252)
    out["skin"] = new_skin
    out["lip"] = np.clip(idp["lip"] + (new_skin - idp["skin"]), 0, 255)
    # Hair and iris: a colour from the whole palette, with a brightness and per-channel spread.
    hair = _HAIR_RGB[np.minimum((d.u() * len(_HAIR_RGB)).astype(np.int64), len(_HAIR_RGB) - 1)]
    hair = hair * np.exp(0.25 * d.n()[:, None] + 0.06 * d.n(3))
    out["hair"] = np.clip((1.0 - a) * idp["hair"] + a * hair, 5, 250)
    iris = _IRIS_RGB[np.minimum((d.u() * len(_IRIS_RGB)).astype(np.int64), len(_IRIS_RGB) - 1)]
    out["iris"] = np.clip((1.0 - a) * idp["iris"] + a * iris * np.exp(0.15 * d.n()[:, None]), 5, 250)
    return out
