"""Fault tolerance: exact resume after SIGKILL and SIGTERM, atomic checkpoints, the lost final validation."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch

from fr_lightning.cli import cli_main, main
from fr_lightning.tracking import EXIT_PREEMPTED, read_offline_run
from fr_lightning.tracking.checkpointing import AtomicCheckpointIO
from fr_lightning.tracking.resume import checkpoint_is_valid, checkpoint_run_id, find_last_checkpoint
from tests.test_cli import ARCFACE, ROOT

STEPS = 6  # 2 epochs x 3 batches
RUN = [
    "--config", str(ARCFACE),
    "--model.init_args.backbone.init_args.width=0.125",
    "--data.init_args.train.init_args.num_identities=6",
    "--data.init_args.train.init_args.samples_per_identity=4",
    "--data.init_args.batch_size=8",
    "--data.init_args.num_workers=0",
    "--data.init_args.hflip=false",
    "--data.init_args.val_sets=[{class_path: fr_lightning.data.SyntheticPairs, init_args: {name: synth-lfw, pairs: 40}}]",
    "--trainer.max_epochs=2",
    "--trainer.check_val_every_n_epoch=2",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
    "--checkpoint.every_n_train_steps=1",
    "--trainer.callbacks+={class_path: tests.test_resume.GradNoise}",
]  # fmt: skip


class GradNoise(pl.Callback):
    """Adds noise drawn from torch, NumPy and Python's RNGs to every gradient, so the weights
    depend on every global RNG stream being restored exactly."""

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: object) -> None:
        scale = 1e-3 * (1.0 + np.random.rand() + random.random())
        for p in pl_module.parameters():
            if p.grad is not None:
                p.grad.add_(scale * torch.randn_like(p.grad))


class KillAt(pl.Callback):
    """Sends ``sig`` to this process at the end of training step ``step`` (before it is checkpointed)."""

    def __init__(self, step: int, sig: int = 9) -> None:
        self.step, self.sig = step, sig

    def on_train_batch_end(self, trainer: pl.Trainer, *args: object, **kwargs: object) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.sig)


class FailOnValidation(pl.Callback):
    """Dies at the start of the first validation (the final one in these runs)."""

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        raise RuntimeError("killed during the final validation")


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, torch.Tensor], float]:
    """The uninterrupted run: final weights and synth-lfw accuracy."""
    here = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("reference"))
    try:
        cli = cli_main(["fit", *RUN, "--trainer.logger=false"])
    finally:
        os.chdir(here)
    assert cli.trainer.global_step == STEPS
    return _weights(cli.model), float(cli.trainer.callback_metrics["val/synth-lfw/acc"])


def _env() -> dict[str, str]:
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "2"}
    env.pop("FR_RUN_ID", None)
    return env


def test_sigkill_at_a_random_step_then_resume_is_bit_identical(tmp_path: Path, reference, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    step = random.Random().randint(2, STEPS - 1)
    kill = f"--trainer.callbacks+={{class_path: tests.test_resume.KillAt, init_args: {{step: {step}}}}}"
    out = subprocess.run(
        [sys.executable, "-c", "import torch; torch.set_num_threads(2); from fr_lightning.cli import main; main()", "fit", *RUN, kill],
        cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == -signal.SIGKILL, out.stderr[-2000:]
    (run_dir,) = (tmp_path / "runs" / "fr-lightning").iterdir()
    last = find_last_checkpoint(tmp_path / "runs" / "fr-lightning")
    assert last is not None and checkpoint_run_id(last) == run_dir.name
    monkeypatch.chdir(tmp_path)
    cli = cli_main(["fit", *RUN, "--ckpt_path=last"])
    assert cli.trainer.global_step == STEPS
    weights, acc = reference
    _assert_identical(_weights(cli.model), weights)
    assert float(cli.trainer.callback_metrics["val/synth-lfw/acc"]) == acc, f"killed at step {step}"
    # The resumed run continued the killed run's W&B run and folder.
    assert [p.name for p in (tmp_path / "runs" / "fr-lightning").iterdir()] == [run_dir.name]
    runs = sorted((tmp_path / "runs" / "wandb").glob("offline-run-*"))
    assert {read_offline_run(r).run_id for r in runs} == {run_dir.name}


def test_sigterm_saves_a_checkpoint_exits_99_and_resumes_exactly(tmp_path: Path, reference, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    monkeypatch.chdir(tmp_path)
    term = f"--trainer.callbacks+={{class_path: tests.test_resume.KillAt, init_args: {{step: 4, sig: {int(signal.SIGTERM)}}}}}"
    no_steps = "--checkpoint.every_n_train_steps=100"  # only the SIGTERM checkpoint exists
    with pytest.raises(SystemExit) as stop:
        main(["fit", *RUN, no_steps, term, "--trainer.logger=false"])
    assert stop.value.code == EXIT_PREEMPTED
    last = tmp_path / "runs" / "checkpoints" / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=False)["global_step"] == 4
    cli = cli_main(["fit", *RUN, no_steps, "--trainer.logger=false", "--ckpt_path=last"])
    weights, acc = reference
    _assert_identical(_weights(cli.model), weights)
    assert float(cli.trainer.callback_metrics["val/synth-lfw/acc"]) == acc


def test_run_killed_in_final_validation_validates_on_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    one_epoch = ["--trainer.max_epochs=1", "--trainer.check_val_every_n_epoch=1"]
    fail = "--trainer.callbacks+={class_path: tests.test_resume.FailOnValidation}"
    with pytest.raises(RuntimeError, match="final validation"):
        cli_main(["fit", *RUN, *one_epoch, fail])
    (run_dir,) = (tmp_path / "runs" / "fr-lightning").iterdir()
    assert not (run_dir / "verification.json").exists()
    cli = cli_main(["fit", *RUN, *one_epoch, "--ckpt_path=last"])
    assert "val/synth-lfw/acc" in cli.trainer.callback_metrics
    assert "synth-lfw" in json.loads((run_dir / "verification.json").read_text())


_KILL_DURING_SAVE = """
import os, signal, sys, torch
from fr_lightning.tracking.checkpointing import AtomicCheckpointIO
path = sys.argv[1]
AtomicCheckpointIO().save_checkpoint({"step": 1, "w": torch.ones(1000)}, path)
real = torch.save
def torn(obj, f, *a, **k):
    f.write(b"PK partial checkpoint")
    f.flush()
    os.kill(os.getpid(), signal.SIGKILL)
torch.save = torn
AtomicCheckpointIO().save_checkpoint({"step": 2, "w": torch.zeros(1000)}, path)
"""


def test_kill_during_checkpoint_write_leaves_last_loadable(tmp_path: Path) -> None:
    last = tmp_path / "checkpoints" / "last.ckpt"
    out = subprocess.run([sys.executable, "-c", _KILL_DURING_SAVE, str(last)], env=_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == -signal.SIGKILL, out.stderr[-2000:]
    assert torch.load(last, weights_only=True)["step"] == 1
    assert checkpoint_is_valid(last)
    leftovers = [p.name for p in last.parent.iterdir() if p != last]
    assert leftovers and all(name.startswith(".last.ckpt.tmp-") for name in leftovers)
    # A torn file under a checkpoint name is skipped when looking for the newest valid one.
    (last.parent / "step0000009.ckpt").write_bytes(b"PK torn")
    assert find_last_checkpoint(tmp_path.parent, tmp_path.name) == last


def test_atomic_io_replaces_in_one_step(tmp_path: Path) -> None:
    path = tmp_path / "a.ckpt"
    AtomicCheckpointIO().save_checkpoint({"x": torch.arange(3)}, path)
    assert torch.equal(torch.load(path, weights_only=True)["x"], torch.arange(3))
    assert [p.name for p in tmp_path.iterdir()] == ["a.ckpt"]
