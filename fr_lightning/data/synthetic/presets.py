"""Difficulty presets: named sets of renderer options that make one nuisance behave like real data.

Each preset is calibrated against the *shape* of a published real-face baseline (never against a
method's outcome); the calibration tables are in ``docs/results/v1.md``. A preset has three parts:

* ``renderer`` — :class:`FaceRenderer` options shared by training and verification images (how
  faces look);
* ``train`` — options of the training set only (what the training distribution is missing);
* ``pairs`` — options of the verification sets only (e.g. frontal-only standard pairs).

``SyntheticSource(preset=...)`` and ``SyntheticPairs(preset=...)`` apply them; the run settings
a preset was calibrated with (``label_noise``, epochs) are listed in ``run`` and documented in
``docs/data.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from fr_lightning.data.synthetic.nuisance import Nuisance


@dataclass(frozen=True)
class Preset:
    """A named difficulty preset (see the module docstring for the three option groups).

    Args:
        name: preset name (``lowres``, ``pose``, ``noise``, ``bias``).
        summary: one line on what the preset imitates.
        renderer: :class:`FaceRenderer` keyword arguments for every image.
        train: extra :class:`FaceRenderer` keyword arguments for training images.
        pairs: extra :class:`FaceRenderer` keyword arguments for verification images.
        run: run settings the preset was calibrated with (documentation and studies).
    """

    name: str
    summary: str
    renderer: Mapping[str, Any] = field(default_factory=dict)
    train: Mapping[str, Any] = field(default_factory=dict)
    pairs: Mapping[str, Any] = field(default_factory=dict)
    run: Mapping[str, Any] = field(default_factory=dict)

    def train_kwargs(self) -> dict[str, Any]:
        """Renderer options of the training images."""
        return {**self.renderer, **self.train}

    def pairs_kwargs(self) -> dict[str, Any]:
        """Renderer options of the verification images."""
        return {**self.renderer, **self.pairs}


#: White balance, exposure and tone vary strongly between photos of one person.
_PHOTO_COLOUR = Nuisance(brightness_std=0.35, contrast_std=0.3, cast_std=0.22)

PRESETS: Mapping[str, Preset] = MappingProxyType(
    {
        "lowres": Preset(
            name="lowres",
            summary="identity in shape and fine detail; colour varies per photo (low resolution hurts)",
            renderer={"colour_jitter": 1.0, "nuisance": _PHOTO_COLOUR, "identity_scale": 2.5, "nuisance_scale": 0.5},
        ),
        "pose": Preset(
            name="pose",
            summary="profiles rare in training (2 %); standard pairs frontal-only, like CFP-FF vs CFP-FP",
            train={"profile_prob": 0.02},
            pairs={"profile_prob": 0.0},
        ),
        "noise": Preset(
            name="noise",
            summary="light nuisance so clean labels are fitted early; label noise makes memorisation show; colour varies per photo",
            # Colour varies per photo as in `lowres`, so a colour histogram no longer identifies a face
            # (70 % on its pairs before, a shortcut that low-resolution probes kept). With colour gone the
            # identity must come from shape: identity spread x4 and nuisance x0.3 (re-calibrated on seeds
            # 101-105: at nuisance x0.6 and spread x1 the 40 %-noise baseline stayed at chance for 10 epochs).
            renderer={"colour_jitter": 1.0, "nuisance": _PHOTO_COLOUR, "identity_scale": 4.0, "nuisance_scale": 0.3},
            run={"label_noise": 0.4},
        ),
        "bias": Preset(
            name="bias",
            summary="strong group imbalance in training (80/12/5/3 %), like a Caucasian-dominated set",
            train={"group_probs": (0.80, 0.12, 0.05, 0.03)},
        ),
    }
)


def get_preset(name: str | None) -> Preset | None:
    """The preset called ``name`` (``None`` for none); a clear error for an unknown name."""
    if name is None:
        return None
    if name not in PRESETS:
        raise ValueError(f"unknown synthetic preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]


def merge_options(preset_options: Mapping[str, Any], given: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """``given`` options, with those still at their default replaced by the preset's value.

    An option set explicitly (different from its default) wins over the preset.
    """
    out = dict(given)
    for key, value in preset_options.items():
        if key not in given or given[key] == defaults.get(key):
            out[key] = value
    return out
