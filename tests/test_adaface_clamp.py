"""AdaFace's cosine clamp: the authors' ±(1 − 1e-3) by default, hand-computed logits and gradients."""

from __future__ import annotations

import math

import pytest
import torch

from fr_lightning.heads import AdaFace


def _logits(head: AdaFace, cos: list[list[float]], labels: list[int], norms: list[float]) -> torch.Tensor:
    head.double().eval()  # float64 buffers; the norm statistics stay at their initial μ = 20, σ = 100
    return head(torch.tensor(cos, dtype=torch.float64), torch.tensor(labels), norms=torch.tensor(norms, dtype=torch.float64))


def test_default_clamp_is_the_authors() -> None:
    head = AdaFace()
    assert head.clamp_eps == 1e-3
    assert "clamp_eps=0.001" in repr(head)


def test_logits_at_c_09995_hand_computed() -> None:
    # Norm 20 = μ, so ẑ = 0: target = s·(cos(clip(θ_y)) − m), negatives = s·c.
    cos, labels, norms = [[0.9995, 0.9995, -0.9995]], [0], [20.0]
    authors = _logits(AdaFace(), cos, labels, norms)
    # c clamped to 0.999: negative 64·0.999 = 63.936, target 64·(0.999 − 0.4) = 38.336, -63.936.
    assert authors[0].tolist() == pytest.approx([38.336, 63.936, -63.936], abs=1e-9)
    old = _logits(AdaFace(clamp_eps=1e-6), cos, labels, norms)
    assert old[0].tolist() == pytest.approx([38.368, 63.968, -63.968], abs=1e-9)
    assert float(old[0, 1] - authors[0, 1]) == pytest.approx(0.032, abs=1e-9)  # the 0.03


def test_margin_on_a_clamped_target_hand_computed() -> None:
    # Norm 40 → ẑ = 0.333·(40 − 20)/(100 + 1e-3); target cos(acos(0.999) − 0.4·ẑ) − (0.4·ẑ + 0.4).
    z = 0.333 * (40.0 - 20.0) / (100.0 + 1e-3)
    want = 64.0 * (math.cos(math.acos(0.999) - 0.4 * z) - (0.4 * z + 0.4))
    got = _logits(AdaFace(), [[0.99999, 0.1]], [0], [40.0])
    assert float(got[0, 0]) == pytest.approx(want, rel=1e-12)
    # Norm 53.3: acos(0.999) − 0.4·ẑ < 1e-3, so θ is clipped to 1e-3 (the authors' ε).
    z = 0.333 * (53.3 - 20.0) / (100.0 + 1e-3)
    want = 64.0 * (math.cos(1e-3) - (0.4 * z + 0.4))
    got = _logits(AdaFace(), [[0.99999, 0.1]], [0], [53.3])
    assert float(got[0, 0]) == pytest.approx(want, rel=1e-12)


def test_no_gradient_beyond_the_clamp() -> None:
    cos = torch.tensor([[0.9995, 0.9, -0.9995, 0.2]], dtype=torch.float64, requires_grad=True)
    head = AdaFace().eval()
    head(cos, torch.tensor([3]), norms=torch.tensor([20.0], dtype=torch.float64)).sum().backward()
    assert cos.grad is not None
    assert cos.grad[0, 0] == 0.0 and cos.grad[0, 2] == 0.0  # clamped, as in the authors' code
    assert cos.grad[0, 1] == pytest.approx(64.0) and cos.grad[0, 3] != 0.0


def test_bad_clamp_eps_is_refused() -> None:
    with pytest.raises(ValueError, match="clamp_eps"):
        AdaFace(clamp_eps=0.0)
