"""Plumbing shared by the miss experiments: where run files go, what each records, the outcome words."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiments.common import ROOT, code_version, git_head

#: Run files of the committed (full) runs: ``<OUT>/<name>.json``.
OUT = ROOT / "experiments" / "out" / "v2" / "misses"

#: The words a decision may give.
OUTCOMES = ("supported", "refuted", "inconclusive")


@dataclass(frozen=True)
class Experiment:
    """One hypothesis test for one miss.

    Attributes:
        name: short name (``poseface``, ``adasin``, ``gabn``, ``lowres``); the run file and the
            generated block ``miss-<name>`` are named after it.
        title: the miss, in a few words.
        hypothesis: the hypothesis, stated before the run.
        rule: the decision rule, stated before the run.
        measure: ``measure(quick, out_dir) -> measured numbers`` (JSON-serialisable).
        decide: ``decide(measured) -> one of OUTCOMES``, the rule as code.
        table: ``table(measured) -> markdown lines`` showing the numbers the decision reads.
    """

    name: str
    title: str
    hypothesis: str
    rule: str
    measure: Callable[[bool, Path], dict[str, Any]]
    decide: Callable[[Mapping[str, Any]], str]
    table: Callable[[Mapping[str, Any]], list[str]]


def command(name: str, quick: bool = False) -> str:
    """The command line that reproduces one experiment's run file."""
    return f"python -m experiments.misses --only {name}" + (" --quick" if quick else "")


def run_experiment(exp: Experiment, quick: bool, out_dir: Path) -> dict[str, Any]:
    """Measure, decide and write ``<out_dir>/<name>.json``; returns the record written."""
    start, head, version = time.time(), git_head(), code_version()  # the code the run started from
    measured = exp.measure(quick, out_dir)
    outcome = exp.decide(measured)
    if outcome not in OUTCOMES:
        raise ValueError(f"{exp.name}: decide() gave {outcome!r}, not one of {OUTCOMES}")
    record = {
        "name": exp.name,
        "title": exp.title,
        "hypothesis": exp.hypothesis,
        "rule": exp.rule,
        "quick": quick,
        "command": command(exp.name, quick),
        "git_head": head,
        "code_version": version,
        "measured": measured,
        "outcome": outcome,
        "wall_s": round(time.time() - start, 1),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{exp.name}.json").write_text(json.dumps(record, indent=1) + "\n")
    return record


def read_run(name: str, out_dir: Path = OUT) -> dict[str, Any]:
    """The run file of experiment ``name``."""
    return json.loads((out_dir / f"{name}.json").read_text())


def pct(x: float) -> str:
    """A fraction as a percentage with two decimals."""
    return f"{100.0 * x:.2f} %"


def train(name: str, variants: Mapping[str, list[str]], seeds: list[int], seed_args: Callable[[list[str], int], list[str]],
          quick: bool, out_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """Fit the diagnosis runs of experiment ``name`` (variant -> runs in ``seeds`` order), two at a time.

    The runner of the v2 studies (cached by code version and every argument, provenance in each
    run file) into ``out_dir/misses-<name>/``; a diagnosis reports no claim, so it declares none.
    """
    from experiments.protocol import Claim, Endpoint
    from experiments.study import run_study

    first = next(iter(variants))
    diagnosis = Claim(name=f"misses-{name}", statement="diagnosis runs of a miss (not a claim)", method=first, baseline=first,
                      endpoints=(Endpoint("val/synth-lfw/acc", 0.0),), seeds=())
    return run_study(diagnosis, variants, seeds, seed_args, command(name, quick), out_dir, "", jobs=1 if quick else 2)


def study_runs(claim_name: str, variants: tuple[str, ...], seeds: list[int]) -> dict[str, list[dict[str, Any]]]:
    """The committed runs of a v2 study's ``variants`` at ``seeds`` (variant -> runs in ``seeds`` order)."""
    from experiments.claims import CLAIMS
    from experiments.report import load

    claim = CLAIMS[claim_name]
    study = load(claim)
    if study is None:
        raise FileNotFoundError(f"the runs of {claim_name!r} (experiments/out/v2/{claim.folder()}/) are needed: {claim.command}")
    index = [study.seeds.index(s) for s in seeds]
    return {v: [study.runs[v][i] for i in index] for v in variants}


def lfw_points(runs: list[dict[str, Any]]) -> list[float]:
    """synth-lfw accuracy of each run, in points."""
    return [100.0 * r["val/synth-lfw/acc"] for r in runs]
