"""Difficulty presets of the synthetic faces (fr_lightning.data.synthetic.presets)."""

from __future__ import annotations

import numpy as np
import pytest

from fr_lightning.data import SyntheticPairs, SyntheticSource
from fr_lightning.data.synthetic import FaceRenderer
from fr_lightning.data.synthetic.presets import PRESETS, get_preset, merge_options


def test_presets_are_named_and_documented() -> None:
    assert set(PRESETS) == {"lowres", "pose", "noise", "bias"}
    for name, preset in PRESETS.items():
        assert preset.name == name and len(preset.summary) > 20
        FaceRenderer(image_size=16, **preset.train_kwargs())  # every option is a valid renderer option
        FaceRenderer(image_size=16, **preset.pairs_kwargs())
    assert get_preset(None) is None
    with pytest.raises(ValueError, match="unknown synthetic preset 'nope'"):
        SyntheticSource(preset="nope")
    with pytest.raises(ValueError, match="unknown synthetic preset"):
        SyntheticPairs(preset="nope")


def test_explicit_argument_wins_over_preset() -> None:
    assert merge_options({"a": 1, "b": 2}, {"a": 5, "b": 0}, {"a": 0, "b": 0}) == {"a": 5, "b": 2}
    assert SyntheticSource(preset="pose").renderer(16).profile_prob == pytest.approx(0.02)
    assert SyntheticSource(preset="pose", profile_prob=0.3).renderer(16).profile_prob == pytest.approx(0.3)
    assert SyntheticPairs(preset="pose").renderer(16).profile_prob == 0.0
    assert SyntheticSource().renderer(16).profile_prob == pytest.approx(0.15)  # no preset: unchanged


def test_colour_jitter_changes_colour_not_geometry() -> None:
    ids, idx = np.repeat(np.arange(4), 2), np.tile(np.arange(2), 4)
    plain = FaceRenderer(seed=0, image_size=32).render(ids, idx)
    jitter = FaceRenderer(seed=0, image_size=32, colour_jitter=1.0).render(ids, idx)
    np.testing.assert_array_equal(plain.landmarks, jitter.landmarks)
    np.testing.assert_array_equal(plain.pose, jitter.pose)
    assert np.abs(plain.images.astype(int) - jitter.images.astype(int)).mean() > 3.0
    with pytest.raises(ValueError, match="colour_jitter"):
        FaceRenderer(colour_jitter=1.5)


def test_lowres_preset_makes_colour_histograms_near_chance() -> None:
    from experiments.colour_cue import colour_cue_accuracy

    default = colour_cue_accuracy(None, pairs=600, image_size=32)
    lowres = colour_cue_accuracy("lowres", pairs=600, image_size=32)
    assert default > 0.58  # colour identifies the default faces (61.5 % measured)
    assert lowres < 0.56  # near chance under the preset (47.2 % measured)


def test_noise_preset_makes_colour_histograms_near_chance() -> None:
    from experiments.colour_cue import colour_cue_accuracy

    # 70.2 % before colour varied per photo (the shortcut the noisy-lowres probes kept); 48.0 % measured now
    assert colour_cue_accuracy("noise", pairs=600, image_size=32) < 0.56


def test_pose_and_bias_presets_shape_the_training_set() -> None:
    ids = np.arange(4000)
    pose = SyntheticSource(preset="pose").renderer(16)
    yaw = pose._nuisance(ids, np.zeros_like(ids))["yaw"]
    assert 0.01 < np.mean(np.abs(yaw) > 0.4 * pose.max_yaw * 0.99) < 0.06  # ~2 % profiles (plus tails)
    bias = SyntheticSource(preset="bias").renderer(16).group_of(ids)
    share = np.bincount(bias, minlength=4) / len(ids)
    np.testing.assert_allclose(share, [0.80, 0.12, 0.05, 0.03], atol=0.02)
