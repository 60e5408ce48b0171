"""experiments/misses: the document shows what the run files give, each test decides in --quick mode,
each rule can go either way, and every committed run started from a commit that declared its hypothesis."""

from __future__ import annotations

import ast
import copy
import subprocess
from pathlib import Path

import pytest

from experiments.misses import EXPERIMENTS
from experiments.misses.common import OUT, OUTCOMES, read_run, run_experiment
from experiments.misses.report import BLOCK, DOC, ROOT, blocks, render


def test_document_blocks_equal_the_run_files() -> None:
    text = DOC.read_text()
    shown = {m.group("name"): m.group(0)[len(m.group(1)) : -len(m.group(3))] for m in BLOCK.finditer(text)}
    generated = blocks()
    assert set(generated) == {f"miss-{name}" for name in EXPERIMENTS}, "a run file is missing"
    for name, body in generated.items():
        assert shown.get(name) == body, f"{name} in {DOC.name} differs; run python -m experiments.misses.report"
    assert render(text, generated) == text


def test_render_replaces_only_named_blocks() -> None:
    text = "a\n<!-- generated:miss-x -->\nold\n<!-- /generated:miss-x -->\n<!-- generated:other -->\nkeep\n<!-- /generated:other -->\n"
    out = render(text, {"miss-x": "new\n"})
    assert "new\n<!-- /generated:miss-x -->" in out and "old" not in out and "keep" in out


#: experiments whose --quick run trains several tiny networks (tens of seconds): the slow suite runs them
TRAINING = {"pair_arcface", "coteaching_agreement", "search_softmax"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in TRAINING else n for n in EXPERIMENTS])
def test_quick_run_yields_a_decision(name: str, tmp_path: Path) -> None:
    record = run_experiment(EXPERIMENTS[name], quick=True, out_dir=tmp_path)
    assert record["outcome"] in OUTCOMES
    assert read_run(name, tmp_path) == record
    assert EXPERIMENTS[name].table(record["measured"])  # the report can show it


@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_committed_outcome_is_the_rule_applied_to_the_numbers(name: str) -> None:
    run = read_run(name)
    assert not run["quick"]
    exp = EXPERIMENTS[name]
    assert run["hypothesis"] == exp.hypothesis and run["rule"] == exp.rule
    assert exp.decide(run["measured"]) == run["outcome"]


def _flip(name: str, measured: dict) -> dict:
    """The committed numbers changed just enough to give the other outcome."""
    m = copy.deepcopy(measured)
    if name == "poseface":
        m["pose"]["share_profile"] = 0.02 if m["pose"]["share_profile"] > 0.05 else 0.06
    elif name == "adasin":
        m["configs"][0]["positive"] = 0.0 if m["configs"][0]["positive"] > m["tol"] else 10 * m["tol"]
        if m["configs"][0]["positive"] == 0.0:
            for c in m["configs"]:
                c.update({k: 0.0 for k in ("t", "difficulty", "margin", "positive", "hard_negative", "easy_negative", "unlabelled")})
                c["hard_set_disagreements"] = 0.0
    elif name == "gabn":
        keep, imb = m["keep"], m["imbalanced"]["mean_gap"]
        m["balanced"]["gap"] = 0.9 * keep * imb if m["balanced"]["gap"] >= keep * imb else imb
    elif name == "lowres":
        r = m["sizes"]["32"]["retention"]
        r["mixture"] = 0.5 if r["mixture"] <= 0.25 else 0.1
        m["sizes"]["112"]["retention"]["mixture"] = 0.9
    elif name == "pair_arcface":
        m["gap_4"] = max(m["gap_4"], 2 * m["min_gap"])
        m["gap_8"] = m["gap_4"] if m["gap_8"] <= m["half"] * m["gap_4"] else 0.25 * m["gap_4"]
    elif name == "search_softmax":
        held = abs(m["mean_diff"]) <= m["max_mean"] and m["ci"][0] >= -m["max_ci"] and m["ci"][1] <= m["max_ci"]
        m["mean_diff"], m["ci"] = (3.0, [1.0, 5.0]) if held else (0.0, [-0.5, 0.5])
    elif name == "coteaching_agreement":
        m["gap_1"] = max(m["gap_1"], 2 * m["min_gap"])
        m["gap_w"] = m["gap_1"] if m["gap_w"] <= m["half"] * m["gap_1"] else 0.25 * m["gap_1"]
    return m


@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_each_rule_can_go_the_other_way(name: str) -> None:
    run = read_run(name)
    flipped = EXPERIMENTS[name].decide(_flip(name, run["measured"]))
    assert {flipped, run["outcome"]} == {"supported", "refuted"}


def _declared(commit: str, name: str) -> dict[str, str] | None:
    """HYPOTHESIS and RULE of experiments/misses/<name>.py at ``commit`` (None without git history)."""
    proc = subprocess.run(["git", "show", f"{commit}:experiments/misses/{name}.py"], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        return None
    found = {}
    for node in ast.parse(proc.stdout).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) and node.targets[0].id in ("HYPOTHESIS", "RULE"):
            found[node.targets[0].id] = ast.literal_eval(node.value)
    return found


@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_run_started_from_a_commit_that_declared_it(name: str) -> None:
    run = read_run(name)
    declared = _declared(run["git_head"], name)
    if declared is None:
        pytest.skip("no git history with that commit (shallow clone or no repository)")
    assert declared == {"HYPOTHESIS": run["hypothesis"], "RULE": run["rule"]}
    assert (OUT / f"{name}.json").is_file()
