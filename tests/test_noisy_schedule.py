"""The co-teaching forget-rate schedule and kept count pinned to the MDA authors' rule.

Their code: ``rate_schedule = ones(n_epoch)·τ; rate_schedule[:T_k] = linspace(0, τ, T_k)``,
indexed by epochs numbered from 1, and ``num_remember = int((1 − R)·N)``. Our ``t`` is the
0-based epoch (or step) index, so ``R(t) = rate_schedule[t + 1]``.
"""

from __future__ import annotations

from fractions import Fraction
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from fr_lightning.functional.coteaching import forget_rate, kept_count, small_loss_mask
from fr_lightning.methods import CoTeaching


def authors_schedule(tau: float, t_k: int, epochs: int) -> np.ndarray:
    """Transcription of the rule: τ everywhere, the first T_k entries replaced by linspace(0, τ, T_k)."""
    schedule = np.full(epochs, tau, dtype=np.float64)
    schedule[:t_k] = np.linspace(0.0, tau, t_k)
    return schedule


def test_hand_computed_values() -> None:
    # τ = 0.4, T_k = 10: the first epoch (t = 0, their e = 1) already drops 0.4/9.
    assert forget_rate(0, 0.4, 10) == pytest.approx(0.4 / 9, rel=1e-15)
    assert forget_rate(1, 0.4, 10) == pytest.approx(0.8 / 9, rel=1e-15)
    assert forget_rate(7, 0.4, 10) == pytest.approx(3.2 / 9, rel=1e-15)
    assert forget_rate(8, 0.4, 10) == 0.4  # e = 9 = T_k − 1: τ exactly
    assert forget_rate(9, 0.4, 10) == 0.4 and forget_rate(500, 0.4, 10) == 0.4
    # T_k = 3: linspace(0, τ, 3) = [0, τ/2, τ]; T_k = 2: [0, τ]; T_k <= 1: τ from the start.
    assert [forget_rate(t, 0.6, 3) for t in range(3)] == [0.3, 0.6, 0.6]
    assert forget_rate(0, 0.6, 2) == 0.6 and forget_rate(0, 0.6, 1) == 0.6 and forget_rate(0, 0.6, 0) == 0.6


@pytest.mark.parametrize("tau", [0.1, 0.2, 0.3, 0.4, 0.6, 0.8])
@pytest.mark.parametrize("t_k", [0, 1, 2, 3, 5, 10, 30, 200])
def test_equals_the_authors_linspace_bit_for_bit(tau: float, t_k: int) -> None:
    schedule = authors_schedule(tau, t_k, 400)
    assert [forget_rate(t, tau, t_k) for t in range(399)] == schedule[1:].tolist()


def test_linear_option_ramps_from_zero() -> None:
    assert [forget_rate(t, 0.4, 4, shape="linear") for t in range(6)] == [0.0, 0.1, 0.2, 0.30000000000000004, 0.4, 0.4]
    with pytest.raises(ValueError, match="shape"):
        forget_rate(0, 0.4, 4, shape="cosine")  # type: ignore[arg-type]


def test_kept_count_is_their_float_truncation() -> None:
    # (1 − 8·(0.4/9))·90 is 58 exactly, but 57.99999999999999 in float64: theirs keeps 57.
    r = authors_schedule(0.4, 10, 20)[8]
    assert (1 - Fraction(32, 90)) * 90 == 58 and (1.0 - r) * 90 < 58
    assert kept_count(r, 90) == 57
    assert kept_count(0.8, 5) == 0  # 0.19999999999999996·5 = 0.9999999999999998
    assert kept_count(0.4, 10) == 6 and kept_count(0.0, 7) == 7 and kept_count(1.0, 7) == 0
    with pytest.raises(ValueError, match="forget_rate"):
        kept_count(1.5, 10)


@pytest.mark.parametrize("n", [1, 7, 64, 90, 145, 512])
def test_mask_keeps_their_count_of_smallest_scores(n: int) -> None:
    scores = torch.randn(n, generator=torch.Generator().manual_seed(n))
    for e in range(1, 12):
        rate = float(authors_schedule(0.4, 10, 12)[e])
        mask = small_loss_mask(scores, rate)
        keep = int((1 - np.float64(rate)) * n)  # their expression, on a numpy float64
        assert int(mask.sum()) == keep
        if 0 < keep < n:
            assert scores[mask].max() <= scores[~mask].min()


@pytest.mark.parametrize("unit", ["epoch", "step"])
def test_callback_uses_the_schedule_in_either_unit(unit: str) -> None:
    method = CoTeaching(forget_rate=0.4, ramp=10, ramp_unit=unit)  # type: ignore[arg-type]
    schedule = authors_schedule(0.4, 10, 40)
    for t in (0, 1, 5, 8, 9, 30):
        trainer = SimpleNamespace(current_epoch=t if unit == "epoch" else 0, global_step=t if unit == "step" else 0)
        assert method.current_rate(trainer) == schedule[t + 1]  # type: ignore[arg-type]
