"""Unit tests of the parametric face renderer (fr_lightning.data.synthetic)."""

from __future__ import annotations

import numpy as np
import pytest

from fr_lightning.data.synthetic import TEMPLATE_112, FaceRenderer, RenderedBatch


@pytest.fixture(scope="module")
def clean() -> FaceRenderer:
    """A renderer of clean, frontal, canonical faces."""
    return FaceRenderer(seed=0, image_size=112, nuisance_scale=0.0)


@pytest.fixture(scope="module")
def noisy() -> FaceRenderer:
    """A renderer with the default nuisance."""
    return FaceRenderer(seed=0, image_size=112)


def test_deterministic_and_independent_of_batch(noisy: FaceRenderer) -> None:
    a = noisy.render(np.array([5, 7, 9]), np.array([0, 3, 11]))
    b = noisy.render(np.array([9]), np.array([11]))  # same sample, other batch composition
    c = FaceRenderer(seed=0, image_size=112).render(np.array([5, 7, 9]), np.array([0, 3, 11]))
    np.testing.assert_array_equal(a.images[2], b.images[0])
    np.testing.assert_array_equal(a.landmarks[2], b.landmarks[0])
    np.testing.assert_array_equal(a.images, c.images)
    np.testing.assert_array_equal(a.pose, c.pose)


def test_index_changes_the_image(noisy: FaceRenderer) -> None:
    out = noisy.render(np.array([3, 3]), np.array([0, 1]))
    assert np.abs(out.images[0].astype(int) - out.images[1].astype(int)).mean() > 5.0


def test_seed_changes_identity_look() -> None:
    ids, idx = np.arange(8), np.zeros(8, np.int64)
    a = FaceRenderer(seed=0, nuisance_scale=0.0).render(ids, idx).images.astype(int)
    b = FaceRenderer(seed=1, nuisance_scale=0.0).render(ids, idx).images.astype(int)
    assert np.abs(a - b).mean(axis=(1, 2, 3)).min() > 3.0


@pytest.mark.parametrize("size", [112, 56])
def test_shapes_and_dtypes(size: int) -> None:
    out = FaceRenderer(seed=0, image_size=size).render(np.arange(6), np.arange(6))
    assert isinstance(out, RenderedBatch)
    assert out.images.shape == (6, size, size, 3) and out.images.dtype == np.uint8
    assert out.labels.dtype == np.int64 and out.labels.tolist() == list(range(6))
    assert out.landmarks.shape == (6, 5, 2) and out.landmarks.dtype == np.float32
    assert out.pose.shape == (6, 3) and out.pose.dtype == np.float32
    assert out.group.shape == (6,) and out.group.dtype == np.int64
    assert np.isfinite(out.landmarks).all() and np.isfinite(out.pose).all()


def test_empty_batch(clean: FaceRenderer) -> None:
    out = clean.render(np.zeros(0, np.int64), np.zeros(0, np.int64))
    assert out.images.shape == (0, 112, 112, 3) and out.landmarks.shape == (0, 5, 2)


@pytest.mark.parametrize("size", [112, 56])
def test_clean_landmarks_near_template(size: int) -> None:
    out = FaceRenderer(seed=0, image_size=size, nuisance_scale=0.0).render(np.arange(64), np.zeros(64, np.int64))
    err = np.linalg.norm(out.landmarks - TEMPLATE_112 * (size / 112.0), axis=-1)
    scale = size / 112.0
    assert err.mean() < 2.0 * scale
    assert err.max() < 8.0 * scale
    np.testing.assert_array_equal(out.pose, 0.0)


def test_landmarks_sit_on_drawn_features(clean: FaceRenderer) -> None:
    out = clean.render(np.arange(24), np.zeros(24, np.int64))
    grey = out.images.astype(np.float64).mean(axis=-1)
    for k in range(24):
        lm = out.landmarks[k]
        for eye, corner in ((0, 3), (1, 4)):
            ex, ey = np.rint(lm[eye]).astype(int)
            # The cheek: below the eye, halfway down to the mouth corner.
            cy = int(round((lm[eye, 1] + lm[corner, 1]) / 2))
            cheek = grey[k, cy - 2 : cy + 3, ex - 2 : ex + 3].mean()
            assert grey[k, ey, ex] < cheek - 10.0, (k, eye)
        # Mouth corners lie on the lips: redder than the cheek above them.
        rgb = out.images[k].astype(np.float64)
        for corner in (3, 4):
            mx, my = np.rint(lm[corner]).astype(int)
            lip = rgb[my, mx + (2 if corner == 3 else -2)]
            cheek_rgb = rgb[my - 8, mx]
            assert (lip[0] - lip[1]) > (cheek_rgb[0] - cheek_rgb[1]), (k, corner)


def test_yaw_override_moves_nose_to_opposite_sides(clean: FaceRenderer) -> None:
    ids = np.repeat(np.arange(5), 2)
    yaw = np.tile([60.0, -60.0], 5)
    out = FaceRenderer(seed=0, nuisance_scale=1.0).render(ids, np.arange(10), yaw=yaw)
    np.testing.assert_allclose(out.pose[:, 0], yaw)
    offset = out.landmarks[:, 2, 0] - out.landmarks[:, :2, 0].mean(axis=1)
    assert (offset[0::2] > 3.0).all() and (offset[1::2] < -3.0).all()
    # Clean frontal vs. clean profile of the same identity differ a lot.
    a = clean.render(np.array([1, 1]), np.array([0, 0]), yaw=np.array([0.0, 70.0])).images.astype(int)
    assert np.abs(a[0] - a[1]).mean() > 10.0


def test_group_override_and_group_of(clean: FaceRenderer) -> None:
    ids = np.arange(20)
    g1, g2 = clean.group_of(ids), FaceRenderer(seed=0).group_of(ids)
    np.testing.assert_array_equal(g1, g2)
    np.testing.assert_array_equal(clean.render(ids[:4], np.zeros(4, np.int64)).group, g1[:4])
    light = clean.render(ids[:8], np.zeros(8, np.int64), group=np.zeros(8, np.int64))
    dark = clean.render(ids[:8], np.zeros(8, np.int64), group=np.full(8, 3))
    np.testing.assert_array_equal(dark.group, 3)
    # Group 3 has darker skin: compare a cheek patch.
    patch = (slice(70, 80), slice(30, 40))
    assert (
        dark.images[:, patch[0], patch[1]].mean(axis=(1, 2, 3))
        < light.images[:, patch[0], patch[1]].mean(axis=(1, 2, 3))
    ).all()


def test_group_frequencies_match_probs() -> None:
    probs = (0.55, 0.25, 0.12, 0.08)
    groups = FaceRenderer(seed=3, group_probs=probs).group_of(np.arange(20000))
    freq = np.bincount(groups, minlength=4) / len(groups)
    np.testing.assert_allclose(freq, probs, atol=0.015)


def test_identity_signal() -> None:
    """Renders of one identity are closer to each other than to other identities."""
    ids = np.repeat(np.arange(12), 2)
    for scale in (0.0, 0.3):
        images = FaceRenderer(seed=0, nuisance_scale=scale).render(ids, np.tile([0, 1], 12)).images.astype(np.float64)
        a, b = images[0::2], images[1::2]
        same = np.abs(a - b).mean()
        diff = np.mean([np.abs(a[i] - b[j]).mean() for i in range(12) for j in range(12) if i != j])
        assert same < 0.6 * diff, scale


#: sha256 of the batches below, recorded with the single-file renderer before it became a package
#: (opencv-python-headless 5.0.0, numpy 2.4.6). Pins the rendering bit for bit.
_RENDER_SHA256 = "48e66bce61409e0a4e257eb0f6cbb308c6ecdb6378452d49c90bc52376b722cf"


def test_rendering_is_bit_identical_to_recorded_hash() -> None:
    import hashlib

    import cv2

    from fr_lightning.data.synthetic import Nuisance

    if cv2.__version__ != "5.0.0" or not np.__version__.startswith("2."):
        pytest.skip(f"hash recorded with opencv 5.0.0 / numpy 2.x, have {cv2.__version__} / {np.__version__}")
    h = hashlib.sha256()
    configs = [
        dict(seed=0, image_size=112),
        dict(seed=3, image_size=48, profile_prob=0.5, identity_scale=0.7),
        dict(seed=1, image_size=64, nuisance=Nuisance(occluder_prob=1.0, blur_prob=1.0)),
    ]
    for kw in configs:
        b = FaceRenderer(**kw).render(np.arange(12) * 7 + 1, np.arange(12) * 3)
        for a in (b.images, b.landmarks, b.pose, b.group):
            h.update(np.ascontiguousarray(a).tobytes())
    assert h.hexdigest() == _RENDER_SHA256
