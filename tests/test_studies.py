"""Smoke tests of the preset studies: each runs its ``--quick`` mode end to end (tiny data, one seed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.mark.slow  # 54 s measured on the shared 2-core machine (load 6): two trainings, one with two passes
def test_lowres_preset_study_quick(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from experiments.lowres_preset import main

    results = main(["--quick", "--variants", "baseline", "multires+logexp", "--out-dir", str(tmp_path)])
    assert set(results) == {"baseline", "multires+logexp"}
    for runs in results.values():
        assert len(runs) == 1
        for key in ("val/synth-lowres@8/acc", "val/synth-lowres@full/acc"):
            assert 0.0 <= runs[0][key] <= 1.0
    saved = json.loads(next(tmp_path.glob("lowres_preset-quick*.json")).read_text())
    assert saved["baseline"][0]["val/synth-lowres@full/acc"] == results["baseline"][0]["val/synth-lowres@full/acc"]
    out = capsys.readouterr().out
    assert "Gain over the baseline" in out and "wall time" in out


def test_calibrate_preset_quick(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from experiments.calibrate_preset import main

    metrics = main(["--preset", "bias", "--quick", "--out-dir", str(tmp_path)])
    for g in range(4):
        assert 0.0 <= metrics[f"val/synth-rfw-g{g}/acc"] <= 1.0
    out = capsys.readouterr().out
    assert "SER" in out and "wall time" in out
    assert (tmp_path / "calibrate-bias-quick.md").is_file()
