"""Evidence protocol v2: a claim and its decision rule, declared in code before the first run.

A :class:`Claim` names the variant that carries the method, the variant it is compared with (the
same configuration without the method, same data and budget), the seeds, and the rule:

- every :class:`Endpoint` must show a paired gain (method − baseline, in points, paired by seed)
  with a one-sided paired t-test p < ``alpha`` *and* a mean gain of at least ``min_gain``; the test
  is against a gain of 0 (superiority) unless the endpoint names another ``null`` (non-inferiority:
  ``null = min_gain = −margin``, "not worse by ``margin`` points or more");
- every :class:`Guard` must not lose more than ``max_drop`` points on average;
- every declared seed must have run.

:func:`verdict` applies the rule to per-seed metrics and returns ``shown``, ``not shown`` (with the
conditions that failed) or ``incomplete``; nobody types a verdict. A study seed draws the data as
well as the initialisation (:mod:`experiments.seeds`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Endpoint:
    """A metric the method must improve: one-sided paired t-test p < alpha and mean gain >= ``min_gain`` points.

    The test rejects a mean gain of ``null`` points or less: 0 for "better than the baseline"; a
    negative ``null`` (with ``min_gain`` equal to it) for "not worse by more than ``-null`` points",
    a non-inferiority endpoint.
    """

    metric: str
    min_gain: float
    label: str = ""
    null: float = 0.0

    def name(self) -> str:
        return self.label or self.metric

    def test(self) -> str:
        """The one-sided test in words."""
        return "one-sided paired t-test" + (f" against {self.null:+g} points" if self.null else "")


@dataclass(frozen=True)
class Guard:
    """A metric the method must not hurt: mean gain >= −``max_drop`` points."""

    metric: str
    max_drop: float
    label: str = ""

    def name(self) -> str:
        return self.label or self.metric


@dataclass(frozen=True)
class Claim:
    """What a study sets out to show and how the verdict is decided (see the module docstring).

    Args:
        name: the study's name (its output folder, its section in ``docs/results.md``).
        statement: the claim in one sentence.
        method: the variant with the method.
        baseline: the variant without it.
        endpoints: metrics that must improve (all of them).
        guards: metrics that must not drop by more than their margin.
        seeds: the reported seeds; each draws the data and the initialisation.
        alpha: significance level of each one-sided test.
        command: the command that runs the study.
        study: the run folder when several claims read one study's runs (e.g. one baseline
            compared with several variants); empty: the claim's own name.
    """

    name: str
    statement: str
    method: str
    baseline: str
    endpoints: tuple[Endpoint, ...]
    guards: tuple[Guard, ...] = ()
    seeds: tuple[int, ...] = (1, 2, 3, 4, 5)
    alpha: float = 0.05
    command: str = ""
    study: str = ""

    def folder(self) -> str:
        """The name of the folder that holds this claim's runs (``experiments/out/v2/<folder>/``)."""
        return self.study or self.name

    def rule(self) -> str:
        """The decision rule in words (printed with the verdict)."""
        tests = " and ".join(f"{e.name()} gains ≥ {_points(e.min_gain)} with {e.test()} p < {self.alpha:g}" for e in self.endpoints)
        guards = "".join(f"; {g.name()} drops by at most {_points(g.max_drop)} on average" for g in self.guards)
        return f"shown iff, over seeds {list(self.seeds)} (each draws the data), {tests}{guards}"


def _points(value: float) -> str:
    return f"{value:g} point" + ("" if value == 1 else "s")


@dataclass(frozen=True)
class PairedGain:
    """Method − baseline per seed, in points, with its summary."""

    metric: str
    gains: tuple[float, ...]
    seeds: tuple[int, ...]

    @property
    def n(self) -> int:
        return len(self.gains)

    @property
    def mean(self) -> float:
        return float(np.mean(self.gains)) if self.gains else math.nan

    @property
    def std(self) -> float:
        """Sample standard deviation (ddof = 1) of the gains."""
        return float(np.std(self.gains, ddof=1)) if self.n > 1 else math.nan

    def interval(self, level: float = 0.95) -> tuple[float, float]:
        """Two-sided ``level`` confidence interval of the mean gain (Student t)."""
        if self.n < 2:
            return (math.nan, math.nan)
        half = stats.t.ppf(0.5 + level / 2, self.n - 1) * self.std / math.sqrt(self.n)
        return (self.mean - half, self.mean + half)

    @property
    def p_greater(self) -> float:
        """One-sided paired t-test p-value for a mean gain > 0."""
        return self.p_above(0.0)

    def p_above(self, null: float) -> float:
        """One-sided paired t-test p-value for a mean gain > ``null`` points."""
        if self.n < 2:
            return math.nan
        if self.std == 0.0:  # every seed gained the same: no spread to test against
            return 0.0 if self.mean > null else 1.0
        return float(stats.ttest_1samp(self.gains, null, alternative="greater").pvalue)

    @property
    def worst(self) -> float:
        return float(min(self.gains)) if self.gains else math.nan


def paired_gain(method: Sequence[Mapping[str, float]], baseline: Sequence[Mapping[str, float]], metric: str, seeds: Sequence[int]) -> PairedGain:
    """Gains in points of ``method`` over ``baseline`` on ``metric``, seed by seed (runs in ``seeds`` order).

    A seed is left out when either run lacks the metric.
    """
    kept = [(s, 100.0 * (m[metric] - b[metric])) for s, m, b in zip(seeds, method, baseline) if metric in m and metric in b]
    return PairedGain(metric, tuple(g for _, g in kept), tuple(s for s, _ in kept))


@dataclass(frozen=True)
class Verdict:
    """The rule's outcome: ``shown``, ``not shown`` or ``incomplete``, and why."""

    outcome: str
    reasons: tuple[str, ...]
    gains: dict[str, PairedGain]


def verdict(claim: Claim, results: Mapping[str, Sequence[Mapping[str, float]]], seeds: Sequence[int]) -> Verdict:
    """Apply ``claim``'s rule to ``results`` (variant -> runs in ``seeds`` order)."""
    method, base = results.get(claim.method, []), results.get(claim.baseline, [])
    metrics = [e.metric for e in claim.endpoints] + [g.metric for g in claim.guards]
    gains = {m: paired_gain(method, base, m, seeds) for m in metrics}
    missing = sorted(set(claim.seeds) - set(seeds)) if len(method) == len(base) == len(seeds) else list(claim.seeds)
    if missing or any(g.n < len(claim.seeds) for g in gains.values()):
        return Verdict("incomplete", (f"declared seeds without a paired result: {missing or 'some metrics'}",), gains)
    reasons = []
    for e in claim.endpoints:
        g = gains[e.metric]
        p = g.p_above(e.null)
        if not p < claim.alpha:
            reasons.append(f"{e.name()}: p = {p:.3f} ≥ {claim.alpha:g}")
        if not g.mean >= e.min_gain:
            reasons.append(f"{e.name()}: mean gain {g.mean:+.2f} < {e.min_gain:g}")
    for guard in claim.guards:
        g = gains[guard.metric]
        if not g.mean >= -guard.max_drop:
            reasons.append(f"{guard.name()}: mean gain {g.mean:+.2f} < −{guard.max_drop:g}")
    return Verdict("not shown" if reasons else "shown", tuple(reasons), gains)
