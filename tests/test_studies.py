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


# --- The method-vs-baseline studies (experiments/{gabn,heads,kd,lowres,noisy,poseface,pixels}.py) ---
#
# Each study has two tests: a fast one in the default suite that runs its --quick mode with the
# training replaced by a recorder (so it checks every run's `fr fit` arguments: YAML that parses,
# classes that import, the budget, and the report), and the real --quick run end to end (slow:
# a few tiny fits each).

STUDIES = ["gabn", "heads", "kd", "lowres", "noisy", "poseface"]
#: study -> the names of the runs its --quick mode makes (seed 0).
QUICK_RUNS = {
    "gabn": ["gabn-baseline", "gabn-gabn"],
    "heads": ["heads-arcface", "heads-adasin"],
    "kd": ["kd-teacher", "kd-student", "kd-feature-nd-logit"],
    "lowres": ["lowres-baseline", "lowres-multires-logexp"],
    "noisy": ["noisy-sym40-baseline", "noisy-sym40-ct-batch"],
    "poseface": ["poseface-baseline", "poseface-poseface"],
}
#: study -> class paths its --quick runs must pass to `trainer.callbacks` (some run).
QUICK_CALLBACKS = {
    "gabn": {"fr_lightning.methods.GABN"},
    "heads": set(),
    "kd": {"fr_lightning.methods.KD"},
    "lowres": {"fr_lightning.methods.LowRes", "fr_lightning.eval.lowres.LowResEvaluation"},
    "noisy": {"fr_lightning.methods.CoTeaching"},
    "poseface": {"fr_lightning.methods.PoseFace", "fr_lightning.eval.pose.PoseEvaluation"},
}


class _AnyMetric(dict):  # type: ignore[type-arg]
    """Final metrics of a recorded (not trained) run: every key reads 0.75."""

    def __contains__(self, key: object) -> bool:
        return True

    def __missing__(self, key: str) -> float:
        return 0.75

    def get(self, key: str, default: object = None) -> float:  # type: ignore[override]
        return 0.75


def _class_paths(value: object) -> list[str]:
    if isinstance(value, dict):
        own = [value["class_path"]] if isinstance(value.get("class_path"), str) else []
        return own + [p for v in value.values() for p in _class_paths(v)]
    if isinstance(value, list):
        return [p for v in value for p in _class_paths(v)]
    return []


@pytest.mark.parametrize("study", STUDIES)
def test_study_quick_plan(study: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import importlib

    import yaml

    module = importlib.import_module(f"experiments.{study}")
    calls: list[tuple[str, list[str], int]] = []

    def record(name: str, args: list[str], seed: int, out_dir: Path) -> dict[str, float]:
        assert out_dir == tmp_path
        calls.append((name, list(args), seed))
        metrics = _AnyMetric(wall_s=1.0)
        if name.startswith("kd-teacher"):  # the study reads the teacher's checkpoint from its work dir
            from experiments.common import run_work_dir

            ckpt = run_work_dir(out_dir, name, seed, args) / "teacher" / "last.ckpt"
            ckpt.parent.mkdir(parents=True)
            ckpt.write_bytes(b"")
        return metrics

    monkeypatch.setattr(module, "run_fit", record)
    module.main(["--quick", "--out-dir", str(tmp_path)])
    assert [name.split("-e")[0].split("-w0")[0] for name, _, _ in calls] == QUICK_RUNS[study]
    seen: set[str] = set()
    for name, args, seed in calls:
        assert seed == 0
        values = {}
        for i, arg in enumerate(args):
            if arg == "--config":
                assert Path(args[i + 1]).is_file(), f"{name}: missing config {args[i + 1]}"
            elif arg.startswith("--") and "=" in arg:
                key, value = arg[2:].split("=", 1)
                values[key] = yaml.safe_load(value)  # every override is YAML
        assert values["trainer.max_epochs"] == 1 and values["data.init_args.train.init_args.num_identities"] == 6
        for entry in values["data.init_args.val_sets"]:
            assert entry["init_args"]["pairs"] == 40
        paths = _class_paths(values)
        for path in paths:
            mod, _, attr = path.rpartition(".")
            assert hasattr(importlib.import_module(mod), attr), f"{name}: {path} does not resolve"
        seen |= set(paths)
    assert QUICK_CALLBACKS[study] <= seen
    assert (tmp_path / f"{study}-quick.md").read_text().startswith(f"Command: `python -m experiments.{study} ")
    assert "| variant |" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.parametrize("study", STUDIES)
def test_study_quick_run(study: str, tmp_path: Path) -> None:
    import importlib

    results = importlib.import_module(f"experiments.{study}").main(["--quick", "--out-dir", str(tmp_path)])
    assert len(results) == len(QUICK_RUNS[study])  # kd: the teacher and two students
    for runs in results.values():
        assert len(runs) == 1 and 0.0 <= runs[0]["val/synth-lfw/acc"] <= 1.0
    saved = json.loads((tmp_path / f"{study}-quick.json").read_text())
    assert saved.keys() == results.keys()
    cached = sorted((tmp_path / "runs").glob("*.json"))
    assert len(cached) == len(QUICK_RUNS[study])
    # A second run reads every result back from the cache (keyed by code version and arguments).
    again = importlib.import_module(f"experiments.{study}").main(["--quick", "--out-dir", str(tmp_path)])
    assert json.dumps(again, sort_keys=True) == json.dumps(results, sort_keys=True)  # same wall_s: nothing re-ran
    assert sorted((tmp_path / "runs").glob("*.json")) == cached


def test_pixels_quick(tmp_path: Path) -> None:
    from experiments.pixels import main

    results = main(["--quick", "--out-dir", str(tmp_path)])
    assert set(results) == {"synth-lfw", "synth-cfpfp", "synth-lowres"}
    assert all(0.0 <= acc <= 1.0 for acc in results.values())
    assert json.loads((tmp_path / "pixels-quick.json").read_text()) == results


def test_run_cache_is_keyed_by_code_and_arguments(tmp_path: Path) -> None:
    from experiments import common

    root = tmp_path / "repo"
    (root / "fr_lightning").mkdir(parents=True)
    (root / "fr_lightning" / "a.py").write_text("x = 1\n")
    version = common.code_version(root)
    assert version == common.code_version(root) and len(version) == 12
    key = common.run_key("run", 0, ["--a=1"], root)
    assert key.startswith("run-c") and key.endswith("-s0")
    assert common.run_key("run", 0, ["--a=2"], root) != key  # other arguments
    assert common.run_key("run", 0, [f"--config={root}/x.yaml"], root) == common.run_key("run", 0, ["--config=./x.yaml"], root)
    (root / "docs.md").write_text("not code")
    assert common.code_version(root) == version  # docs do not invalidate runs
    (root / "fr_lightning" / "a.py").write_text("x = 2\n")
    assert common.code_version(root) != version  # a code change does
    assert common.run_key("run", 0, ["--a=1"], root) != key
    path = common.run_cache_path(tmp_path, "run", 3, ["--a=1"])
    assert path.parent == tmp_path / "runs" and path.name.endswith("-s3.json")


def test_sample_path_traces_a_record_to_the_loss() -> None:
    from experiments.sample_path import trace

    tracer = trace()
    names = [h.split(":")[1] for h in tracer.path()]
    assert names[0] == "FaceSamples.__getitems__"
    for expected in ("RecordIOReader.read_at", "unpack_header", "decode_image", "collate_faces", "reduce_loss"):
        assert expected in names
    assert names.index("unpack_header") < names.index("decode_image") < names.index("collate_faces") < names.index("reduce_loss")
    # Entered, but handles only offsets and lengths: not a hop.
    assert any(e.endswith("RecordIOReader._part_header") for e in tracer.entered) and "RecordIOReader._part_header" not in names
