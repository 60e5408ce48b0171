"""5-point similarity alignment: closed form vs an independent linear least-squares reference."""

from __future__ import annotations

import numpy as np
import pytest

from fr_lightning.data import TEMPLATE_112, align_face, similarity_transform, template, transform_points
from fr_lightning.data.synthetic import FaceRenderer


def _similarity(angle_deg: float, scale: float, t: tuple[float, float]) -> np.ndarray:
    a = np.deg2rad(angle_deg)
    rot = scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return np.hstack([rot, np.array(t)[:, None]])


def _reference(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least squares over (a, b, tx, ty) with x' = a x - b y + tx, y' = b x + a y + ty (float64)."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(src, dst):
        rows += [[x, -y, 1, 0], [y, x, 0, 1]]
        rhs += [u, v]
    a, b, tx, ty = np.linalg.lstsq(np.array(rows), np.array(rhs), rcond=None)[0]
    return np.array([[a, -b, tx], [b, a, ty]])


def test_recovers_an_exact_similarity() -> None:
    m = _similarity(25.0, 1.8, (13.0, -7.0))
    src = transform_points(TEMPLATE_112, np.linalg.inv(np.vstack([m, [0, 0, 1]]))[:2])
    np.testing.assert_allclose(similarity_transform(src, TEMPLATE_112), m, atol=1e-9)


def test_noisy_points_match_linear_least_squares() -> None:
    rng = np.random.default_rng(0)
    for _ in range(5):
        src = TEMPLATE_112 * rng.uniform(0.5, 3) + rng.normal(0, 4, (5, 2)) + rng.uniform(-50, 50, 2)
        np.testing.assert_allclose(similarity_transform(src, TEMPLATE_112), _reference(src, TEMPLATE_112), atol=1e-8)


def test_never_reflects() -> None:
    mirrored = TEMPLATE_112 * np.array([-1.0, 1.0])
    m = similarity_transform(mirrored, TEMPLATE_112)
    assert np.linalg.det(m[:, :2]) > 0
    with pytest.raises(ValueError, match="same place"):
        similarity_transform(np.ones((5, 2)), TEMPLATE_112)


def test_align_rendered_face_lands_on_template() -> None:
    out = FaceRenderer(seed=0, image_size=160, nuisance_scale=0.0).render(np.arange(3), np.arange(3))
    for img, lm in zip(out.images, out.landmarks):
        aligned, mapped = align_face(img, lm, 112)
        assert aligned.shape == (112, 112, 3) and aligned.dtype == np.uint8
        # A face's landmarks are not an exact similarity of the template; the fit is close.
        assert np.abs(mapped - TEMPLATE_112).max() < 12
    small, mapped = align_face(out.images[0], out.landmarks[0], 56)
    assert small.shape == (56, 56, 3)
    np.testing.assert_allclose(template(56), TEMPLATE_112 / 2)
    assert np.abs(mapped - template(56)).max() < 6
