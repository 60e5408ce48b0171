"""Smoke tests of the method-on-preset studies (``python -m experiments.method_preset --quick``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from experiments.method_preset import STUDIES, derived


def test_derived_group_and_curve_metrics() -> None:
    run = {f"val/synth-rfw-g{g}/acc": acc for g, acc in enumerate([0.9, 0.8, 0.8, 0.7])}
    run["curve"] = [{"val/synth-lfw/acc": a} for a in (0.6, 0.8, 0.7)]
    out = derived(run)
    assert out["group/mean"] == pytest.approx(0.8)
    assert out["group/ser"] == pytest.approx(0.3 / 0.1)
    assert out["curve/peak"] == pytest.approx(0.8) and out["curve/drop"] == pytest.approx(0.1)


def test_every_study_has_a_baseline_first_and_one_method() -> None:
    for name, study in STUDIES.items():
        variants = list(study.variants)
        assert len(variants) >= 2, name
        assert set(study.heads) <= set(variants), name


@pytest.mark.slow  # each trains two tiny runs (about 20 s apiece on a quiet machine); CI runs them in its slow step
@pytest.mark.parametrize("study", list(STUDIES))
def test_method_preset_quick(study: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from experiments.method_preset import main

    results = main(["--study", study, "--quick", "--out-dir", str(tmp_path)])
    assert list(results) == list(STUDIES[study].variants)
    for runs in results.values():
        assert len(runs) == 1 and runs[0]["curve"], "each run keeps its validation curve"
        for key in STUDIES[study].columns.values():
            assert key in runs[0], key
    saved = json.loads((tmp_path / f"{study}_preset-quick.json").read_text())
    assert set(saved) == set(results)
    out = capsys.readouterr().out
    assert "Gain over" in out and "wall time" in out


@pytest.mark.slow  # two trainings of tiny data each for the parts, plus a teacher
@pytest.mark.parametrize("study", ["lowres-kd", "noisy-lowres"])
def test_combo_preset_quick(study: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from experiments.combo_preset import main

    results = main(["--study", study, "--quick", "--out-dir", str(tmp_path)])
    both = next(v for v in results if "+" in v)
    assert "baseline" in results and len(results) == 4
    for runs in results.values():
        assert 0.0 <= runs[0]["val/synth-lowres@8/acc"] <= 1.0
    out = capsys.readouterr().out
    assert f"`{both}` over" in out and "wall time" in out
    assert (tmp_path / f"combo-{study}-quick.md").is_file()
