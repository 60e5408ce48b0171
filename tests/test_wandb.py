"""W&B tracking of `fr` runs, checked in offline mode from the run file `wandb sync` uploads."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning.pytorch as pl
import pytest
import yaml

from fr_lightning.cli import cli_main
from fr_lightning.tracking import EXIT_INTERRUPTED, read_offline_run, recipe_name, run_config, run_tags
from tests.test_cli import ARCFACE, ROOT, TINY

SWEEP = ROOT / "configs" / "sweeps" / "head-margin.yaml"
TRAIN_ONLY = ["--trainer.limit_val_batches=0", "--trainer.max_steps=1"]


class Boom(pl.Callback):
    """Raises on the first training batch (``KeyboardInterrupt`` when ``keyboard``)."""

    def __init__(self, keyboard: bool = False) -> None:
        self.keyboard = keyboard

    def on_train_batch_start(self, *args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt if self.keyboard else RuntimeError("boom")


def _runs(root: Path) -> list[Path]:
    return sorted((root / "runs" / "wandb").glob("offline-run-*"))


def _read(run: Path, timeout: float = 30.0):  # noqa: ANN202
    """The offline run, once W&B's service has flushed its exit record (it writes asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        out = read_offline_run(run)
        if out.exit_code is not None or time.monotonic() > deadline:
            return out
        time.sleep(0.2)


def _debug_log(run: Path) -> str:
    return (run / "logs" / "debug.log").read_text()


def test_fit_run_has_config_summary_table_and_clean_finish(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    method = "--trainer.callbacks+={class_path: fr_lightning.methods.LowRes}"
    cli_main(["fit", *TINY, "--data.init_args.num_workers=2", method])
    (run_path,) = _runs(tmp_path)
    run = _read(run_path)
    # Config: the resolved recipe, with the CLI's own keys.
    head = run.config["model"]["init_args"]["head"]
    assert head["class_path"] == "fr_lightning.heads.ArcFace"
    assert head["init_args"]["s"] == 32.0 and head["init_args"]["m"] == 0.5
    assert run.config["model"]["init_args"]["optimizer"]["init_args"]["lr"] == 0.1
    assert run.config["methods"] == ["lowres"]
    assert "LowRes" in run.config["callbacks"]
    assert run.config["recipe"] == "arcface"
    # Naming.
    assert run.name == f"arcface-{run.run_id}" and run.group == "arcface" and run.job_type == "fit"
    assert {"method:lowres", "head:ArcFace", "backbone:IResNet", "data:SyntheticSource"} <= set(run.tags)
    # Summary: final and best verification numbers, the table and the native ROC chart.
    assert 0.0 <= run.summary["val/synth-lfw/acc"] <= 1.0
    assert run.summary["best/val/synth-lfw/acc"] == pytest.approx(100 * run.summary["val/synth-lfw/acc"])
    assert run.summary["val/verification/_type"] == "table-file"  # nested values come back flattened
    assert run.summary["val/roc_chart_table/_type"] == "table-file"
    # A clean finish with num_workers > 0: exit code recorded, nothing abandoned, no ERROR.
    assert run.exit_code == 0
    log = _debug_log(run_path)
    assert "got exitcode: 0" in log
    assert "ERROR" not in log and "abandoning" not in log
    # verification.json next to the checkpoints, in the documented format.
    report = json.loads((tmp_path / "runs" / "fr-lightning" / run.run_id / "verification.json").read_text())
    assert set(report) == {"synth-lfw"}
    assert report["synth-lfw"]["acc"] == pytest.approx(100 * run.summary["val/synth-lfw/acc"])
    assert {"acc_std", "threshold", "tar@far=1e-3", "auc"} <= set(report["synth-lfw"])
    assert -1.0 <= report["synth-lfw"]["threshold"] <= 1.0
    # fr validate logs into its own run, named the same way.
    last = tmp_path / "runs" / "fr-lightning" / run.run_id / "checkpoints" / "last.ckpt"
    # fr eval ijb|tinyface name their runs after the fit run that wrote the checkpoint.
    from fr_lightning.cli.eval import eval_run_naming

    assert eval_run_naming(last, "fallback") == {"name": run.name, "group": "arcface"}
    assert eval_run_naming(tmp_path / "missing.ckpt", "fallback") == {"name": "fallback"}
    cli_main(["validate", *TINY, f"--ckpt_path={last}"])
    val = _read(next(p for p in _runs(tmp_path) if p != run_path))
    assert val.name == f"arcface-{val.run_id}" and val.job_type == "validate" and val.exit_code == 0
    assert "val/synth-lfw/acc" in val.summary


@pytest.mark.parametrize("keyboard", [False, True], ids=["exception", "ctrl-c"])
def test_failing_run_records_nonzero_exit_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keyboard: bool) -> None:
    monkeypatch.chdir(tmp_path)
    boom = f"--trainer.callbacks+={{class_path: tests.test_wandb.Boom, init_args: {{keyboard: {str(keyboard).lower()}}}}}"
    handler = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises((RuntimeError, SystemExit)):
            cli_main(["fit", *TINY, *TRAIN_ONLY, boom])
    finally:
        signal.signal(signal.SIGINT, handler)  # Lightning ignores SIGINT after a Ctrl-C
    (run_path,) = _runs(tmp_path)
    run = _read(run_path)
    assert run.exit_code == (EXIT_INTERRUPTED if keyboard else 1)
    assert f"got exitcode: {run.exit_code}" in _debug_log(run_path)
    assert "abandoning" not in _debug_log(run_path)


def test_names_tags_and_config_can_be_overridden(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    over = ["--trainer.logger.init_args.name=mine", "--trainer.logger.init_args.group=g", "--trainer.logger.init_args.tags=[a, b]"]
    cli_main(["fit", *TINY, *TRAIN_ONLY, *over])
    run = _read(_runs(tmp_path)[0])
    assert (run.name, run.group, run.tags) == ("mine", "g", ["a", "b"])


def test_run_config_and_tags_helpers() -> None:
    resolved = {
        "config": [str(ARCFACE), "configs/data/ms1mv3.yaml"],
        "model": {"init_args": {"head": {"class_path": "fr_lightning.heads.CosFace", "init_args": {"m": 0.35}},
                                "backbone": {"class_path": "fr_lightning.backbones.IResNet"}}},
        "data": {"init_args": {"train": {"class_path": "fr_lightning.data.RecordIOSource"}}},
        "trainer": {"callbacks": [{"class_path": "fr_lightning.methods.GABN", "init_args": {"top_n": 1}}]},
    }  # fmt: skip
    assert recipe_name(resolved["config"]) == "arcface"
    assert recipe_name(["configs/data/ms1mv3.yaml"]) == "ms1mv3" and recipe_name(None) == "fr"
    cfg = run_config(resolved, ["gabn"], "arcface")
    assert cfg["callbacks"] == {"GABN": {"top_n": 1}} and "callbacks" not in cfg["trainer"]
    assert cfg["methods"] == ["gabn"] and cfg["recipe"] == "arcface"
    assert run_tags(resolved, ["gabn"]) == ["method:gabn", "head:CosFace", "backbone:IResNet", "data:RecordIOSource"]


def _agent_command(sweep: dict, point: dict[str, object]) -> list[str]:
    """The command a W&B agent runs for ``point``: ``${args}`` -> ``--<name>=<value>`` per parameter."""
    args = [f"--{name}={value}" for name, value in point.items()]
    out: list[str] = []
    for part in sweep["command"]:
        out += args if part == "${args}" else [part]
    return out


def test_sweep_points_map_onto_fit_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    sweep = yaml.safe_load(SWEEP.read_text())
    assert sweep["metric"]["name"] == "val/synth-lfw/acc"
    params = sweep["parameters"]
    assert set(params) == {"model.init_args.head", "model.init_args.head.init_args.m"}
    monkeypatch.chdir(ROOT)
    for head in params["model.init_args.head"]["values"]:
        for m in params["model.init_args.head.init_args.m"]["values"]:
            command = _agent_command(sweep, {"model.init_args.head": head, "model.init_args.head.init_args.m": m})
            assert command[:2] == ["fr", "fit"]
            cli = cli_main([*command[2:], "--trainer.logger=false"], run=False)  # run=False takes no subcommand
            assert f"{type(cli.model.head).__module__.rsplit('.', 1)[0]}.{type(cli.model.head).__name__}" == head
            assert cli.model.head.m == m and cli.model.head.s == 32.0


@pytest.mark.slow
def test_ddp_two_processes_make_one_run_without_sync_dist_warnings(tmp_path: Path) -> None:
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONPATH": str(ROOT)}
    env.pop("FR_RUN_ID", None)
    ddp = ["--trainer.accelerator=cpu", "--trainer.devices=2", "--trainer.strategy=ddp"]
    out = subprocess.run(
        [sys.executable, "-m", "fr_lightning.cli", "fit", *TINY, *ddp], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    runs = _runs(tmp_path)
    assert len(runs) == 1, runs
    run = _read(runs[0])
    assert run.exit_code == 0 and "val/synth-lfw/acc" in run.summary
    assert "sync_dist=True" not in out.stderr + out.stdout
    assert [p.name for p in (tmp_path / "runs" / "fr-lightning").iterdir()] == [run.run_id]
