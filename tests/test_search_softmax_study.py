"""Smoke test of the Search-Softmax study: its ``--quick`` mode end to end (tiny data, one seed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def test_quick_arguments_keep_the_budget_equal_and_the_reward_set_apart() -> None:
    from experiments.search_softmax_study import parse, run_args

    args = parse(["--quick"])
    runs = {v: run_args(v, args) for v in ("arcface", "cosface", "search-softmax")}
    shared = [a for a in runs["arcface"] if not a.endswith(("arcface.yaml",))]
    for variant, argv in runs.items():
        assert [a for a in argv if a.startswith("--data.") or a.startswith("--trainer.max")] == [
            a for a in shared if a.startswith("--data.") or a.startswith("--trainer.max")
        ], variant
        assert "--model.init_args.head.init_args.s=32.0" in argv
    callbacks = [a for a in runs["search-softmax"] if a.startswith("--trainer.callbacks=")]
    assert len(callbacks) == 1 and "LossSearch" in callbacks[0] and "synth-reward" in callbacks[0]
    assert all("LossSearch" not in a for a in runs["arcface"] + runs["cosface"] if a.startswith("--trainer.callbacks="))


@pytest.mark.slow  # three 4-step trainings with rewards and validation: about a minute on the shared 2-core machine
def test_search_softmax_study_quick(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from experiments.search_softmax_study import main

    results = main(["--quick", "--out-dir", str(tmp_path)])
    assert set(results) == {"arcface", "cosface", "search-softmax"}
    for runs in results.values():
        assert len(runs) == 1
        for key in ("val/synth-lfw/acc", "val/synth-cfpfp/acc"):
            assert 0.0 <= runs[0][key] <= 1.0
    search = results["search-softmax"][0]
    assert "search/mu/0" in search and "search/candidate/reward" in search
    assert "search/mu/0" not in results["arcface"][0]
    saved = json.loads((tmp_path / "search_softmax-quick.json").read_text())
    assert saved["cosface"][0]["val/synth-lfw/acc"] == results["cosface"][0]["val/synth-lfw/acc"]
    out = capsys.readouterr().out
    assert "Gain of search-softmax over arcface" in out and "Gain of search-softmax over cosface" in out and "wall time" in out
