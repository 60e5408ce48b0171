"""Smoke tests of experiments/f2c_study.py: its --quick plan (fast) and the real --quick run (slow)."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
import yaml

from experiments import f2c_study, preset_study


def _values(args: list[str]) -> dict[str, object]:
    values: dict[str, object] = {}
    for i, arg in enumerate(args):
        if arg == "--config":
            assert Path(args[i + 1]).is_file()
        elif arg.startswith("--") and "=" in arg:
            key, value = arg[2:].split("=", 1)
            values[key] = yaml.safe_load(value)  # every override is YAML (later ones win, as in the CLI)
    return values


def _class_paths(value: object) -> list[str]:
    if isinstance(value, dict):
        own = [value["class_path"]] if isinstance(value.get("class_path"), str) else []
        return own + [p for v in value.values() for p in _class_paths(v)]
    if isinstance(value, list):
        return [p for v in value for p in _class_paths(v)]
    return []


def test_quick_plan_gives_every_classifier_the_same_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    calls: list[tuple[str, list[str], int]] = []

    def record(tasks, out_dir, jobs=1):  # type: ignore[no-untyped-def]
        calls.extend((n, list(a), s) for n, a, s in tasks)
        return [{"val/synth-lfw/acc": 0.7, "val/synth-cfpfp/acc": 0.6, "wall_s": 1.0} for _ in tasks]

    monkeypatch.setattr(preset_study, "fit_all", record)  # what run_grid trains with
    f2c_study.main(["--quick", "--out-dir", str(tmp_path)])
    assert [n.split("-e")[0] for n, _, _ in calls] == ["f2c_study-full-fc", "f2c_study-partial-fc", "f2c_study-f2c"]
    steps, images = {}, {}
    for name, args, seed in calls:
        values = _values(args)
        assert seed == 0
        for path in _class_paths(values):
            mod, _, attr = path.rpartition(".")
            assert hasattr(importlib.import_module(mod), attr), f"{name}: {path} does not resolve"
        samples = values["data.init_args.train"]["init_args"]["num_identities"] * values["data.init_args.train"]["init_args"]["samples_per_identity"]
        batch, epochs = values["data.init_args.batch_size"], values["trainer.max_epochs"]
        variant = name.split("-e")[0].removeprefix("f2c_study-")
        if variant == "f2c":
            assert values["model.init_args.classifier"]["class_path"] == "fr_lightning.classifiers.F2C"
            assert values["trainer.callbacks"] == []  # the F2C classifier owns its gallery: one config entry
            items = samples // 2
            steps[variant], images[variant] = epochs * (items // batch), batch * f2c_study.ITEM_IMAGES
        else:
            steps[variant], images[variant] = epochs * (samples // batch), batch
    assert len(set(steps.values())) == 1 and len(set(images.values())) == 1, (steps, images)
    out = capsys.readouterr().out
    assert "| variant |" in out and "Gain over partial-fc" in out
    assert json.loads((tmp_path / "f2c_study-quick.json").read_text())["f2c"][0]["val/synth-lfw/acc"] == 0.7


def test_budget_arguments_are_checked() -> None:
    with pytest.raises(SystemExit):
        f2c_study.parse(["--epochs", "4"])


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_quick_run_trains_all_three(tmp_path: Path) -> None:
    results = f2c_study.main(["--quick", "--out-dir", str(tmp_path)])
    assert set(results) == {"full-fc", "partial-fc", "f2c"}
    for runs in results.values():
        assert 0.0 <= runs[0]["val/synth-lfw/acc"] <= 1.0
    assert (tmp_path / "f2c_study-quick.md").read_text().startswith("Budget ")
