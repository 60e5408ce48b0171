"""The `fr` command: config errors, saved config, checkpoints, offline W&B, export."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fr_lightning.cli import cli_main
from fr_lightning.cli.mistakes import UserMistake

ROOT = Path(__file__).resolve().parents[1]
ARCFACE = ROOT / "recipes" / "arcface.yaml"

TINY = [
    "--config", str(ARCFACE),
    "--model.init_args.backbone.init_args.width=0.125",
    "--data.init_args.train.init_args.num_identities=6",
    "--data.init_args.train.init_args.samples_per_identity=4",
    "--data.init_args.batch_size=8",
    "--data.init_args.num_workers=0",
    "--data.init_args.val_sets=[{class_path: fr_lightning.data.SyntheticPairs, init_args: {name: synth-lfw, pairs: 40}}]",
    "--trainer.max_epochs=1",
    "--trainer.check_val_every_n_epoch=1",
    "--trainer.enable_progress_bar=false",
]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    return path


def _parse_error(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """The message of a config error: printed (SystemExit 2), or a UserMistake that ``fr`` prints."""
    with pytest.raises((SystemExit, UserMistake)) as exc:
        cli_main(args, run=False)
    return capsys.readouterr().err + (str(exc.value) if isinstance(exc.value, UserMistake) else "")


def test_unknown_key_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = _write(tmp_path, "model:\n  init_args:\n    not_a_key: 3\n")
    err = _parse_error(["--config", str(ARCFACE), "--config", str(bad)], capsys)
    assert "not_a_key" in err and "bad.yaml" in err


def test_wrong_type_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = _write(tmp_path, "data:\n  init_args:\n    batch_size: many\n")
    err = _parse_error(["--config", str(ARCFACE), "--config", str(bad)], capsys)
    assert "batch_size" in err and "bad.yaml" in err


def test_unknown_class_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = _write(tmp_path, "model:\n  init_args:\n    head:\n      class_path: fr_lightning.heads.NoSuchFace\n")
    err = _parse_error(["--config", str(ARCFACE), "--config", str(bad)], capsys)
    assert "NoSuchFace" in err and "bad.yaml" in err


def test_fit_writes_config_checkpoint_and_offline_wandb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cli = cli_main(["fit", *TINY])
    run = tmp_path / "runs" / "fr-lightning"
    configs = list(run.glob("*/config.yaml"))
    assert len(configs) == 1, list(run.rglob("*"))
    assert "fr_lightning.heads.ArcFace" in configs[0].read_text()
    assert (configs[0].parent / "checkpoints" / "last.ckpt").is_file()
    assert list((tmp_path / "runs" / "wandb").glob("offline-run-*")), "no offline W&B run"
    assert "val/synth-lfw/acc" in cli.trainer.callback_metrics
    assert list(configs[0].parent.glob("plots/val_roc_*.png"))
    # num_classes flowed from the data module into the classifier.
    assert cli.model.classifier.weight.shape[0] == 6
    # fr export writes only the backbone.
    out = tmp_path / "backbone.pth"
    subprocess.run(
        [sys.executable, "-m", "fr_lightning.cli", "export", str(configs[0].parent / "checkpoints" / "last.ckpt"), str(out)],
        check=True,
    )
    state = torch.load(out, weights_only=True)
    assert set(state) == set(cli.model.backbone.state_dict())
    # validate / test / predict from the checkpoint, as LightningCLI gives them.
    last = str(configs[0].parent / "checkpoints" / "last.ckpt")
    fit_acc = float(cli.trainer.callback_metrics["val/synth-lfw/acc"])
    val = cli_main(["validate", *TINY, "--trainer.logger=false", f"--ckpt_path={last}"])
    assert float(val.trainer.callback_metrics["val/synth-lfw/acc"]) == pytest.approx(fit_acc)
    test = cli_main(["test", *TINY, "--trainer.logger=false", f"--ckpt_path={last}"])
    assert "test/synth-lfw/acc" in test.trainer.callback_metrics
    pred = cli_main(["predict", *TINY, "--trainer.logger=false", f"--ckpt_path={last}"])
    assert pred.trainer.state.finished


def test_checkpointing_can_be_switched_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cli = cli_main(["fit", *TINY, "--trainer.logger=false", "--trainer.enable_checkpointing=false", "--trainer.max_steps=1", "--trainer.limit_val_batches=0"])
    assert cli.trainer.checkpoint_callback is None
    assert not list(tmp_path.rglob("*.ckpt"))


def test_logger_can_be_switched_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cli_main(["fit", *TINY, "--trainer.logger=false", "--trainer.max_steps=1", "--trainer.limit_val_batches=0"])
    assert not (tmp_path / "runs" / "wandb").exists()
    assert (tmp_path / "runs" / "config.yaml").is_file()
