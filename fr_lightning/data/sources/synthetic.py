"""The built-in synthetic faces as a training source and as verification sets.

The renderer (:mod:`fr_lightning.data.synthetic`) is imported only when a dataset or pair set is
built, so importing the sources (e.g. to read a RecordIO folder) does not load it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from fr_lightning.data.pairs import PairSet
from fr_lightning.data.sources.base import MapSource, ValSource

if TYPE_CHECKING:
    from fr_lightning.data.synthetic import FaceRenderer
    from fr_lightning.data.synthetic_sets import SyntheticFaceDataset

__all__ = ["SyntheticSource", "SyntheticPairs", "default_val_sets", "group_val_sets"]


class SyntheticSource(MapSource):
    """Faces from the built-in parametric renderer (the default; nothing is downloaded).

    Args:
        num_identities: identities in the training set.
        samples_per_identity: images per identity (one epoch = ``num_identities × samples_per_identity``).
        seed: renderer seed (fixes every identity's look).
        group_probs: training mix of the 4 demographic groups (skewed so a bias exists).
        profile_prob: fraction of samples drawn as profiles (|yaw| up to ``max_yaw``).
        max_yaw: largest |yaw| in degrees.
        nuisance_scale: strength of lighting, clutter, occluders, blur, jitter (0 = clean faces).
        preset: difficulty preset (``lowres``, ``pose``, ``noise`` or ``bias``; see docs/data.md).
            Its options replace those of the arguments above that are left at their defaults.
    """

    #: Defaults of the renderer options a preset may replace.
    _DEFAULTS = {"group_probs": (0.55, 0.25, 0.12, 0.08), "profile_prob": 0.15, "max_yaw": 80.0, "nuisance_scale": 1.0}

    def __init__(
        self,
        num_identities: int = 1000,
        samples_per_identity: int = 50,
        seed: int = 0,
        group_probs: tuple[float, float, float, float] = (0.55, 0.25, 0.12, 0.08),
        profile_prob: float = 0.15,
        max_yaw: float = 80.0,
        nuisance_scale: float = 1.0,
        preset: str | None = None,
    ) -> None:
        if num_identities < 2 or samples_per_identity < 1:
            raise ValueError("data.train: num_identities must be >= 2 and samples_per_identity >= 1")
        self.num_identities = num_identities
        self.samples_per_identity = samples_per_identity
        self.seed = seed
        self.group_probs = tuple(group_probs)
        self.profile_prob = profile_prob
        self.max_yaw = max_yaw
        self.nuisance_scale = nuisance_scale
        self.preset = _check_preset(preset)

    @property
    def num_classes(self) -> int:
        return self.num_identities

    def renderer(self, image_size: int) -> FaceRenderer:
        """The renderer these settings describe."""
        from fr_lightning.data.synthetic import FaceRenderer
        from fr_lightning.data.synthetic.presets import get_preset, merge_options

        options = {
            "group_probs": tuple(self.group_probs),
            "profile_prob": self.profile_prob,
            "max_yaw": self.max_yaw,
            "nuisance_scale": self.nuisance_scale,
        }
        preset = get_preset(self.preset)
        if preset is not None:
            options = merge_options(preset.train_kwargs(), options, self._DEFAULTS)
        return FaceRenderer(seed=self.seed, image_size=image_size, **options)

    def dataset(self, image_size: int, hflip: bool) -> SyntheticFaceDataset:
        from fr_lightning.data.synthetic_sets import SyntheticFaceDataset

        return SyntheticFaceDataset(self.renderer(image_size), self.num_identities, self.samples_per_identity, hflip)


class SyntheticPairs(ValSource):
    """A synthetic verification set of held-out identities (``synth-lfw``, ``synth-cfpfp``, ...).

    Args:
        name: metric prefix, e.g. ``synth-lfw``.
        kind: ``standard``, ``cross_pose`` (frontal vs profile), ``lowres`` (one side degraded) or ``group``.
        pairs: number of pairs (6,000 like LFW).
        lowres_size: probe resolution in px for ``lowres``.
        group: demographic group for ``group`` sets.
        seed: renderer seed.
        set_seed: selects the held-out identities and samples of this set.
        nuisance_scale: nuisance strength of the rendered faces.
        preset: difficulty preset (see :class:`SyntheticSource`); its verification-image options
            apply (``nuisance_scale`` wins when it is not 1).
    """

    def __init__(
        self,
        name: str = "synth-lfw",
        kind: Literal["standard", "cross_pose", "lowres", "group"] = "standard",
        pairs: int = 6000,
        lowres_size: int = 12,
        group: int = 0,
        seed: int = 0,
        set_seed: int = 0,
        nuisance_scale: float = 1.0,
        preset: str | None = None,
    ) -> None:
        self.name = name
        self.kind = kind
        self.pairs = pairs
        self.lowres_size = lowres_size
        self.group = group
        self.seed = seed
        self.set_seed = set_seed
        self.nuisance_scale = nuisance_scale
        self.preset = _check_preset(preset)

    def renderer(self, image_size: int) -> FaceRenderer:
        """The renderer of this set's images (the preset's verification-image options applied)."""
        from fr_lightning.data.synthetic import FaceRenderer
        from fr_lightning.data.synthetic.presets import get_preset, merge_options

        options: dict[str, object] = {"nuisance_scale": self.nuisance_scale}
        preset = get_preset(self.preset)
        if preset is not None:
            options = merge_options(preset.pairs_kwargs(), options, {"nuisance_scale": 1.0})
        return FaceRenderer(seed=self.seed, image_size=image_size, **options)

    def build(self, image_size: int) -> PairSet:
        from fr_lightning.data.synthetic_sets import synthetic_pairs

        return synthetic_pairs(
            self.renderer(image_size),
            self.name,
            kind=self.kind,
            pairs=self.pairs,
            lowres_size=self.lowres_size,
            group=self.group,
            set_seed=self.set_seed,
        )


def _check_preset(name: str | None) -> str | None:
    """``name`` if it is a known preset (or ``None``); a clear error otherwise."""
    if name is not None:
        from fr_lightning.data.synthetic.presets import get_preset

        get_preset(name)
    return name


def default_val_sets(pairs: int = 6000) -> list[ValSource]:
    """``synth-lfw``, ``synth-cfpfp`` and ``synth-lowres`` (each from its own held-out identities)."""
    return [
        SyntheticPairs("synth-lfw", "standard", pairs=pairs, set_seed=0),
        SyntheticPairs("synth-cfpfp", "cross_pose", pairs=pairs, set_seed=1),
        SyntheticPairs("synth-lowres", "lowres", pairs=pairs, set_seed=2),
    ]


def group_val_sets(pairs: int = 6000) -> list[ValSource]:
    """``synth-rfw-g0`` .. ``synth-rfw-g3``: one verification set per demographic group."""
    return [SyntheticPairs(f"synth-rfw-g{g}", "group", pairs=pairs, group=g, set_seed=10 + g) for g in range(4)]
