"""Evidence v2, the misses: one stated hypothesis per method that missed its claim, and the experiment that tests it.

    python -m experiments.misses                 # every experiment; run files in experiments/out/v2/misses/
    python -m experiments.misses --only adasin   # one of them
    python -m experiments.misses --quick         # smoke run on tiny inputs, into a temporary folder

Each module states its ``HYPOTHESIS`` and ``RULE`` and turns the rule into ``decide()`` before
any run; the runner writes ``<name>.json`` (hypothesis, rule, measured numbers, outcome, git
commit and code version, command) and :mod:`experiments.misses.report` renders the
``miss-<name>`` blocks of ``docs/results/misses.md`` from those files only.
"""

from __future__ import annotations

from experiments.misses import adasin, coteaching_agreement, gabn, lowres, pair_arcface, poseface, search_softmax
from experiments.misses.common import Experiment

#: Every experiment by name, in the order of docs/results/misses.md.
EXPERIMENTS: dict[str, Experiment] = {m.EXPERIMENT.name: m.EXPERIMENT for m in (poseface, adasin, gabn, lowres, pair_arcface, coteaching_agreement, search_softmax)}

__all__ = ["EXPERIMENTS", "Experiment"]
